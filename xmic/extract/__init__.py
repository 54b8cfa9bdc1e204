"""Extraction: frames and hand crops of segments through a frozen CLIP, written into the cache."""

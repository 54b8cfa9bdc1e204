"""Frozen towers: open_clip and timm image towers and the CLIP text tower, loaded offline.

Below both stages that use them: extraction encodes frames and class names with them, training
and evaluation rebuild the text tower a vocabulary was made with (CoOp, CoCoOp). Imports the
cache (fingerprints, file hashing) and the shared config only.
"""

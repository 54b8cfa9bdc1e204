"""Which frames of a segment to encode.

Input: a segment's first and last frame (inclusive, in the video's numbering) and a policy.
Output: the sorted frame numbers to encode. ``all`` keeps every frame. ``per_bin`` keeps
``per_bin`` evenly spaced candidates in each of ``bins`` equal bins (default 4 x 16 = 64 frames),
so the trainer's 16-bin jitter (SPEC §2) still finds several distinct frames in every bin while
the cache stays a fraction of ``all`` (EPIC segments average ~200 frames at 50-60 fps).
"""
from __future__ import annotations

import numpy as np


def frames_to_encode(start: int, stop: int, policy: str = "per_bin", per_bin: int = 4,
                     bins: int = 16) -> list[int]:
    if stop < start:
        raise ValueError(f"segment stops (frame {stop}) before it starts (frame {start})")
    n = stop - start + 1
    if policy == "all" or n <= bins * per_bin:
        return list(range(start, stop + 1))
    if policy != "per_bin":
        raise ValueError(f"unknown sampling policy {policy!r}; use all or per_bin")
    # candidate k of bin i at offset (i + (k + 0.5) / per_bin) * n / bins
    pos = (np.arange(bins)[:, None] + (np.arange(per_bin)[None] + 0.5) / per_bin) * n / bins
    return sorted(set((start + np.floor(pos).astype(int).ravel()).tolist()))

"""The bottom of every box format: the error a box source raises, the arithmetic all formats
share, the numbering rule of trimmed clips, and the protocol every source follows.

Inputs: a box (left, top, right, bottom) and the frame's size; a clip pickle's frame keys and
the clip's span. Outputs: ``check_box`` -> the box as four floats, refused (``BoxError``,
naming where) when it holds NaN or Inf or has a negative size; ``clip_box`` -> the box clipped
to the frame, or None (the full frame) when it is at most ``min_box_px`` wide or high;
``clip_numbering`` -> how a trimmed clip's pickle numbers its frames; ``BoxSource``, the
protocol of every format (``xmic.extract.boxes.FORMATS``). No format imports another.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from xmic.config import XmicError


class BoxError(XmicError):
    pass


def check_box(box, where: str) -> tuple[float, float, float, float]:
    l, t, r, b = (float(x) for x in box)
    if not all(math.isfinite(v) for v in (l, t, r, b)):
        raise BoxError(f"{where}: box {box} holds NaN or Inf")
    if r < l or b < t:
        raise BoxError(f"{where}: box {box} has negative size")
    return l, t, r, b


def clip_box(box, width: int, height: int, min_box_px: float = 1.0):
    l, t, r, b = box
    l, t = min(max(l, 0.0), width), min(max(t, 0.0), height)
    r, b = min(max(r, 0.0), width), min(max(b, 0.0), height)
    if r - l <= min_box_px or b - t <= min_box_px:
        return None
    return (l, t, r, b)


# How a trimmed clip's detection pickle numbers its frames: by the parent video's frames, as
# the annotations do ("video"), or from 0 over the clip, as the detector run on the clip file
# writes them ("clip"). Recorded in the hand-crop fingerprint of trimmed datasets.
FRAME_KEYS = ("video", "clip")


def clip_numbering(keys, start: int, stop: int, path) -> str | None:
    """Which numbering a trimmed clip's pickle uses, from its frame keys and the clip's span
    ``[start, stop]`` in the parent video's frames: the range holding more keys, ``[start,
    stop]`` ("video") or ``[0, stop - start]`` ("clip"). A file whose keys fit both equally
    (ambiguous) or neither is refused, naming its key range and the expected ones; None for a
    file without entries."""
    keys = np.asarray(sorted(keys), np.int64)
    if not len(keys):
        return None
    n = int(stop) - int(start) + 1
    if start == 0:  # both numberings are the same
        return "video"
    in_video = int(np.searchsorted(keys, start + n) - np.searchsorted(keys, start))
    in_clip = int(np.searchsorted(keys, n))
    if in_video != in_clip:
        return "video" if in_video > in_clip else "clip"
    what = "fit both" if in_video else "fit neither"
    raise BoxError(f"{path}: its frame keys {int(keys[0])}..{int(keys[-1])} {what} of the clip's "
                   f"numberings: from 0 over the clip (0..{n - 1}) or by the parent video's "
                   f"frames ({start}..{start + n - 1}); the detector must have run on this clip "
                   "(see docs/hand-boxes.md, 'Frame numbers of trimmed clips')")


class BoxSource:
    """What every box format answers, for (video, segment, frame) in the annotations' frame
    numbers (``span``: a trimmed clip's start and stop, for pickles that count from 0)."""
    box_format = ""       # its name: recorded with the plan and in the fingerprint (crop.boxes)
    per_video = False     # its boxes come one file per video (the coverage check caches them)

    def __init__(self, path, hand_score: float = 0.8, object_score: float = 0.01,
                 min_box_px: float = 1.0, trimmed: bool = False, box_format: str | None = None):
        self.path = Path(path)
        self.thresholds = (hand_score, object_score, min_box_px)
        self.trimmed = trimmed

    def has_video(self, video_id: str) -> bool:
        return True

    def numbering(self, video_id: str, span=None) -> str | None:
        return None

    def describe(self, video_id: str | None = None) -> str:
        return self.box_format

    def frames_with_boxes(self, video_id: str, segment_id: str, span=None) -> np.ndarray:
        raise NotImplementedError

    def usable_frames(self, video_id: str, segment_id: str, frames, span=None) -> np.ndarray:
        raise NotImplementedError

    def box(self, video_id: str, segment_id: str, frame: int, width: int, height: int,
            span=None):
        raise NotImplementedError

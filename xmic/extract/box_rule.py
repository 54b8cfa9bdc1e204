"""The bottom of every box format: the error a box source raises, and the arithmetic all formats
share.

Inputs: a box (left, top, right, bottom) and the frame's size. Outputs: ``check_box`` -> the box
as four floats, refused (``BoxError``, naming where) when it holds NaN or Inf or has a negative
size; ``clip_box`` -> the box clipped to the frame, or None (the full frame) when it is at most
``min_box_px`` wide or high. Every format (``detections``, ``detector_pickles``, ``box_tables``)
imports these from here, so none imports another back.
"""
from __future__ import annotations

import math

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

"""Hand-object boxes as the 100DOH detector itself writes them (Shan et al., CVPR 2020,
github ddshan/hand_object_detector, the detector behind EPIC-100's released boxes).

Input: one video's pickle ``VIDEO.pkl`` = ``{"info": {"width": W, "height": H}, frame: {"hand_dets":
array [n, 10] or None, "obj_dets": array [m, >=5] or None}, ...}``, frames numbered as the
annotations number them, boxes in pixels of a W x H image. Hand rows are the detector's
``[x1, y1, x2, y2, score, contact state, offset magnitude, offset dx, offset dy, side]`` (contact
state 0 = no contact; the offset points from the hand's centre to its object, in the detector's
units: ``magnitude * 10000 * (dx, dy)`` pixels); object rows start ``[x1, y1, x2, y2, score]``.
Output: ``DetectorVideo.crop(frame, width, height, ...)`` -> the crop box in pixels of the decoded
frame, or None. Pairing is the detector's own ``filter_object`` (lib/model/utils/net_utils.py):
a hand in contact takes the object whose centre is nearest to its centre plus its offset, in the
detector's pixels and in its float32 arithmetic (float64 picks another object on near-ties); then the crop rule of docs/method.md §2: hands above ``hand_score``, paired
objects of score >= ``object_score``, the union scaled to the decoded frame, clipped, full frame
when none or <= ``min_box_px``. Loaded through the restricted unpickler only; a file that is
not this format, arrays of the wrong width, NaN boxes, a bad frame key or an ``info`` size of 0
raise ``BoxError`` naming the file and the frame. Detections are kept in float32, the
detector's own dtype (an array shared by many frames through the pickle's memo once).
"""
from __future__ import annotations

import math

import numpy as np

from xmic.extract.boxes.rule import BoxError, clip_box

HAND_COLUMNS = 10
OBJECT_COLUMNS = 5
MAX_FRAME = 2**31 - 1  # frame numbers fit the index's int32


class DetectorVideo:
    box_format = "100doh"
    pairing = "filter_object in float32"  # recorded in the fingerprint (crop.pairing)

    @staticmethod
    def matches(data) -> bool:
        """A pickle of this format: the detector's dict with ``info`` and one entry per frame."""
        return isinstance(data, dict) and "info" in data

    def __init__(self, data: dict, path, video_id: str):
        info = data.get("info")
        try:
            self.width, self.height = float(info["width"]), float(info["height"])
        except (TypeError, KeyError, ValueError):
            raise BoxError(f"{path}: 'info' must be {{'width': W, 'height': H}} of the frames the "
                           f"detector saw, got {info!r}") from None
        if not (self.width > 0 and self.height > 0 and math.isfinite(self.width * self.height)):
            raise BoxError(f"{path}: 'info' gives a frame size of {info.get('width')}x"
                           f"{info.get('height')}; width and height must be > 0 pixels")
        self.path, self.frames = path, {}
        seen: dict[int, np.ndarray] = {}  # arrays shared by frames (a pickle's memo): one copy
        for key, rec in data.items():
            if key == "info":
                continue
            where = f"{path}: frame {key!r}"
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise BoxError(f"{where}: frame keys must be frame numbers (integers >= 0)")
            if not isinstance(rec, dict):
                raise BoxError(f"{where}: expected {{'hand_dets': array, 'obj_dets': array}}")
            if int(key) > MAX_FRAME:
                raise BoxError(f"{where}: a frame number above {MAX_FRAME} is no video's frame")
            self.frames[int(key)] = (
                _rows(rec.get("hand_dets"), HAND_COLUMNS, True, where, "hand_dets", seen),
                _rows(rec.get("obj_dets"), OBJECT_COLUMNS, False, where, "obj_dets", seen))

    def has_hand(self, frame: int, hand_score: float) -> bool:
        return frame in self.frames and bool((self.frames[frame][0][:, 4] > hand_score).any())

    def crop(self, frame: int, width: int, height: int, hand_score: float, object_score: float,
             min_box_px: float, where: str = ""):
        if frame not in self.frames:
            return None
        hands, objects = self.frames[frame]  # [n, 10], [m, >=5], pixels of the detector's frame
        objects = objects[objects[:, 4] >= object_score]
        centres = _centres(objects)                                          # [m, 2] float32
        boxes = []
        for h in hands:
            if not h[4] > hand_score:  # strictly above, as the detector's drawing and EPIC's
                continue
            boxes.append(h[:4])
            if h[5] > 0 and len(objects):  # filter_object: state <= 0 means no object
                boxes.append(objects[nearest_object(centres, h), :4])
        if not boxes:
            return None
        b = np.stack(boxes)
        sx, sy = width / self.width, height / self.height  # to the decoded frame's pixels
        return clip_box((float(b[:, 0].min() * sx), float(b[:, 1].min() * sy),
                         float(b[:, 2].max() * sx), float(b[:, 3].max() * sy)), width, height,
                        min_box_px)


def _centres(boxes: np.ndarray) -> np.ndarray:
    """[m, 2] box centres in float32, as the detector's ``calculate_center`` computes them."""
    b = boxes[:, :4].astype(np.float32)
    two = np.float32(2)
    return np.stack([(b[:, 0] + b[:, 2]) / two, (b[:, 1] + b[:, 3]) / two], axis=1)


def nearest_object(centres: np.ndarray, hand: np.ndarray) -> int:
    """The object a hand in contact is paired with, in the detector's float32 arithmetic
    (``filter_object``): the centre nearest to the hand's centre plus ``magnitude * 10000 *
    (dx, dy)``; the first of a tie."""
    h = hand[:9].astype(np.float32)
    c = _centres(h[None, :4])[0]
    reach = h[6] * np.float32(10000)
    point = np.array([c[0] + reach * h[7], c[1] + reach * h[8]], np.float32)
    dist = ((centres - point) ** 2).sum(axis=1)                            # [m] float32
    return int(np.argmin(dist))


def _rows(a, columns: int, exact: bool, where: str, name: str, seen: dict) -> np.ndarray:
    """One frame's detections as float32 [n, columns] (the detector's own dtype), checked; an
    array shared by several frames is converted and checked once."""
    if a is None:
        return np.zeros((0, columns), np.float32)
    if id(a) in seen:
        return seen[id(a)]
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        raise BoxError(f"{where}: {name} must be a numeric array or None, got {type(a).__name__}")
    original = a
    a = a.astype(np.float32, copy=False)
    if a.ndim != 2 or (a.shape[1] != columns if exact else a.shape[1] < columns):
        want = f"{columns}" if exact else f"at least {columns}"
        raise BoxError(f"{where}: {name} has shape {list(a.shape)}; the detector writes rows of "
                       f"{want} columns")
    if not np.isfinite(a[:, :5]).all() or (exact and not np.isfinite(a).all()):
        raise BoxError(f"{where}: {name} holds NaN or Inf")
    if (a[:, 2] < a[:, 0]).any() or (a[:, 3] < a[:, 1]).any():
        raise BoxError(f"{where}: {name} holds a box of negative size")
    seen[id(original)] = a
    return a

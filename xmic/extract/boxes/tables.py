"""Crop boxes given as a table, in pixels: a parquet/CSV box table or X-MIC's box pickle.

Inputs: a ``.parquet``/``.csv`` file with ``segment_id`` or ``video_id``, ``frame``, ``left``,
``top``, ``right``, ``bottom`` (pixels of the decoded frame), or the released code's pickle
``dict[segment_id][frame] = (left, top, right, bottom)`` (through the restricted unpickler).
Output: ``TableSource`` (box format ``table``) and ``XmicBoxSource`` (``xmic-boxes``), box
sources over a ``BoxTable``: per key (a segment or a video) its frames as a sorted array and
``box(key, frame)`` -> the box or None, found by binary search (no per-row Python object, so a
table of millions of rows loads in a second). The box is the crop itself: no thresholds apply.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xmic.extract.boxes.rule import BoxError, BoxSource, check_box, clip_box

COLUMNS = ("frame", "left", "top", "right", "bottom")


class BoxTable:
    def __init__(self, key_kind: str, keys, frames, boxes):
        """``keys`` [N] (str), ``frames`` [N] (int), ``boxes`` [N, 4] (float)."""
        self.key_kind = key_kind                         # "segment" | "video"
        import pyarrow as pa
        import pyarrow.compute as pc
        arr = keys if isinstance(keys, pa.Array) else pa.array(keys, type=pa.string())
        enc = pc.dictionary_encode(arr)
        idx = np.asarray(enc.indices, dtype=np.int64)
        names = enc.dictionary.to_pylist()
        frames = np.asarray(frames, dtype=np.int64)
        order = np.lexsort((frames, idx))
        self.frames_sorted = frames[order]
        self.boxes = np.asarray(boxes, dtype=np.float64)[order]               # [N, 4]
        idx = idx[order]
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]]) if len(idx) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(idx)]
        self.span = {names[idx[s]]: (int(s), int(e)) for s, e in zip(starts, ends)}

    def frames(self, key: str) -> np.ndarray:
        s, e = self.span.get(key, (0, 0))
        return self.frames_sorted[s:e]

    def box(self, key: str, frame: int):
        s, e = self.span.get(key, (0, 0))
        i = s + int(np.searchsorted(self.frames_sorted[s:e], frame))
        if i < e and self.frames_sorted[i] == frame:
            return tuple(self.boxes[i])
        return None


def read_box_table(path: Path) -> BoxTable:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    t = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
    key = "segment_id" if "segment_id" in t.column_names else "video_id"
    missing = [c for c in (key, *COLUMNS) if c not in t.column_names]
    if missing:
        raise BoxError(f"{path}: box table lacks column(s) {missing}")
    try:
        boxes = np.stack([t[c].to_numpy(zero_copy_only=False).astype(np.float64)
                          for c in COLUMNS[1:]], axis=1)                        # [N, 4]
        frames = t["frame"].to_numpy(zero_copy_only=False).astype(np.int64)
    except (ValueError, TypeError) as e:
        raise BoxError(f"{path}: frame and box columns must be numbers, without empty cells "
                       f"({type(e).__name__}: {e})") from None
    keys = t[key].cast("string").combine_chunks()
    return BoxTable("segment" if key == "segment_id" else "video", keys, frames, boxes)


def read_xmic_boxes(path: Path) -> BoxTable:
    from xmic.cache.safe_pickle import safe_load_pickle
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise BoxError(f"{path}: expected dict[segment_id][frame] = box")
    keys, frames, boxes = [], [], []
    for s, per_frame in data.items():
        if not isinstance(per_frame, dict):
            raise BoxError(f"{path}: segment {s!r}: expected dict[frame] = box")
        for f, b in per_frame.items():
            keys.append(str(s))
            frames.append(int(f))
            boxes.append(tuple(b) if len(b) == 4 else (np.nan,) * 4)
    return BoxTable("segment", keys, frames, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


class TableSource(BoxSource):
    """A ``.parquet``/``.csv`` box table."""
    box_format = "table"
    suffixes = (".parquet", ".csv")

    def __init__(self, path, hand_score: float = 0.8, object_score: float = 0.01,
                 min_box_px: float = 1.0, trimmed: bool = False, box_format: str | None = None):
        super().__init__(path, hand_score, object_score, min_box_px, trimmed)
        self._table = self.read(self.path)

    @staticmethod
    def read(path: Path) -> BoxTable:
        return read_box_table(path)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.suffix in cls.suffixes and not path.is_dir()

    def _key(self, video_id: str, segment_id: str) -> str:
        return segment_id if self._table.key_kind == "segment" else video_id

    def frames_with_boxes(self, video_id: str, segment_id: str, span=None) -> np.ndarray:
        return self._table.frames(self._key(video_id, segment_id))

    def usable_frames(self, video_id: str, segment_id: str, frames, span=None) -> np.ndarray:
        return np.isin(np.asarray(frames, np.int64), self.frames_with_boxes(video_id, segment_id))

    def box(self, video_id: str, segment_id: str, frame: int, width: int, height: int,
            span=None):
        raw = self._table.box(self._key(video_id, segment_id), frame)
        where = f"{self.path}: video {video_id}, segment {segment_id}, frame {frame}"
        return None if raw is None else clip_box(check_box(raw, where), width, height,
                                                 self.thresholds[2])


class XmicBoxSource(TableSource):
    """X-MIC's box pickle, ``dict[segment_id][frame] = (left, top, right, bottom)``."""
    box_format = "xmic-boxes"
    suffixes = (".pkl", ".pickle")

    @staticmethod
    def read(path: Path) -> BoxTable:
        return read_xmic_boxes(path)


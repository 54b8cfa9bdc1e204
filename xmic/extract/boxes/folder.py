"""A folder of per-video detection pickles, ``DIR/VIDEO.pkl``, one format per folder: EPIC-100's
released detections (``xmic.extract.boxes.epic100``) or the 100DOH detector's own output
(``xmic.extract.boxes.detector``).

Input: the folder, the crop thresholds, whether each video is a trimmed clip (EGTEA), and the
folder's format once known (from the plan). Output: ``FolderSource``, the ``BoxSource`` of the
folder: each video's pickle read through the restricted unpickler on first use, its format
recognised by the ``VIDEO_FORMATS`` records (a pickle of another format than the folder's is
refused), the last ``VIDEOS_KEPT`` kept (segments come sorted by video: memory is bounded by a
few videos, not the split); a trimmed clip's pickle read by the numbering its keys show
(``clip_numbering``).
"""
from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from xmic.extract.boxes.detector import DetectorVideo
from xmic.extract.boxes.epic100 import EpicVideo
from xmic.extract.boxes.rule import BoxError, BoxSource, clip_numbering

VIDEOS_KEPT = 8  # parsed videos a box source keeps (per process: the planner, each worker)
VIDEO_FORMATS = (EpicVideo, DetectorVideo)  # a pickle's format: the first whose ``matches``


def load_video_detections(path: Path, video_id: str):
    """One video's pickle, in any of ``VIDEO_FORMATS``, read through the restricted unpickler
    (plain data and numpy arrays; any other global is refused, nothing runs)."""
    v = read_video_detections(path, video_id)
    if v is None:
        raise BoxError(f"{path}: neither EPIC-100 detections (a list of serialized Detections) "
                       "nor the 100DOH detector's output (a dict with 'info' and one entry per "
                       "frame); see docs/hand-boxes.md")
    return v


def read_video_detections(path: Path, video_id: str):
    """``load_video_detections``, or None when the pickle is of none of ``VIDEO_FORMATS``."""
    from xmic.cache.safe_pickle import ForbiddenGlobal, RestrictedUnpickler
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise BoxError(f"{path}: detection pickle for video {video_id} not found") from None
    except ForbiddenGlobal as e:
        raise BoxError(f"{path}: refused, nothing of it was run: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, OSError, MemoryError) as e:
        raise BoxError(f"{path}: unreadable detection pickle ({type(e).__name__}: {e})") from None
    for fmt in VIDEO_FORMATS:
        if fmt.matches(data):
            return fmt(data, path, video_id)
    return None


def load_detection_pickle(path: Path, video_id: str) -> dict[int, object]:
    """frame_number -> Detections message of one EPIC-100 pickle."""
    v = load_video_detections(path, video_id)
    if not isinstance(v, EpicVideo):
        raise BoxError(f"{path}: holds {v.box_format} detections, not EPIC-100 detections")
    return v.frames


class FolderSource(BoxSource):
    per_video = True

    def __init__(self, path, hand_score: float = 0.8, object_score: float = 0.01,
                 min_box_px: float = 1.0, trimmed: bool = False, box_format: str | None = None):
        super().__init__(path, hand_score, object_score, min_box_px, trimmed)
        self.box_format = box_format or ""  # the folder's format, once known (the plan's)
        self._videos: OrderedDict[str, object] = OrderedDict()
        self._numbering: dict[str, str | None] = {}

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.is_dir()

    def video(self, video_id: str):
        """The loaded detections of one video; the last ``VIDEOS_KEPT`` stay loaded."""
        if video_id in self._videos:
            self._videos.move_to_end(video_id)
            return self._videos[video_id]
        where = f"{self.path}: video {video_id}"
        if "/" in video_id or "\\" in video_id or video_id in ("", ".", ".."):
            raise BoxError(f"{self.path}: video id {video_id!r} is not a plain file name")
        from xmic.extract.media import media_path
        v = load_video_detections(media_path(self.path, f"{video_id}.pkl", where=where), video_id)
        if self.box_format and v.box_format != self.box_format:
            raise BoxError(f"{v.path}: holds {v.box_format} detections, but this cache's boxes "
                           f"are {self.box_format}; one box folder holds one format")
        self._videos[video_id] = v
        while len(self._videos) > VIDEOS_KEPT:
            self._videos.popitem(last=False)
        return v

    def has_video(self, video_id: str) -> bool:
        return (self.path / f"{video_id}.pkl").is_file()

    def describe(self, video_id: str | None = None) -> str:
        """The folder's format, read from one of its pickles (``video_id``'s) when not known."""
        if not self.box_format and video_id is not None:
            self.box_format = self.video(video_id).box_format
        return self.box_format or "detections"

    def numbering(self, video_id: str, span=None) -> str | None:
        """How a trimmed clip's pickle numbers its frames (``FRAME_KEYS``), decided once per
        video from its keys and the clip's ``span`` (start, stop); None for other videos."""
        if not self.trimmed or span is None:
            return None
        if video_id not in self._numbering:
            v = self.video(video_id)
            self._numbering[video_id] = clip_numbering(v.frames, span[0], span[1], v.path)
        return self._numbering[video_id]

    def _offset(self, video_id: str, span) -> int:
        """Annotation frame number minus the pickle's key for the same frame."""
        return int(span[0]) if self.numbering(video_id, span) == "clip" else 0

    def frames_with_boxes(self, video_id: str, segment_id: str, span=None) -> np.ndarray:
        """Sorted frame numbers [n], as the annotations number them, that the detector ran on."""
        keys = np.sort(np.fromiter(self.video(video_id).frames, np.int64))
        return keys + self._offset(video_id, span)

    def usable_frames(self, video_id: str, segment_id: str, frames, span=None) -> np.ndarray:
        """Bool [n]: which of ``frames`` have a hand above ``hand_score`` (its crop may still be
        too small: extraction counts those fallbacks)."""
        v, off = self.video(video_id), self._offset(video_id, span)
        return np.array([v.has_hand(int(f) - off, self.thresholds[0]) for f in frames], bool)

    def box(self, video_id: str, segment_id: str, frame: int, width: int, height: int,
            span=None):
        """The crop box of annotation frame ``frame``, or None for the full frame."""
        where = f"{self.path}: video {video_id}, segment {segment_id}, frame {frame}"
        hs, os_, mp = self.thresholds
        key = frame - self._offset(video_id, span)
        return self.video(video_id).crop(key, width, height, hs, os_, mp, where)

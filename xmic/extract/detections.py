"""Hand-object boxes and the hand-crop rule (docs/method.md §2).

Inputs, one of: a folder of per-video pickles ``VIDEO.pkl``, either EPIC-100's released
detections (a pickled list of serialized ``Detections`` protobuf messages, schema in
``hoa_messages``, boxes in [0, 1]) or the 100DOH detector's own output
(``xmic.extract.detector_pickles``, boxes in pixels; docs/hand-boxes.md); an X-MIC box pickle
(``dict[segment_id][frame] = (left, top, right, bottom)`` in pixels); a parquet/CSV box table
(``segment_id`` or ``video_id``, ``frame``, ``left``, ``top``, ``right``, ``bottom`` in pixels).
Output: ``BoxSource.box(video_id, segment_id, frame, width, height, span)`` -> the crop box in
pixels, or None for the full frame; ``describe`` names the source's kind for the fingerprint;
``frames_with_boxes`` and ``usable_frames`` tell the coverage check at plan time which frames
have detections and which a hand above ``hand_score``. A trimmed clip's pickle (EGTEA) may number
its frames from 0 over the clip or by the parent video's frames: ``clip_numbering`` decides which
from its keys and the clip's ``span`` (refusing a file that fits both or neither). For
EPIC-100 detections the crop is the union of hands with score > ``hand_score`` and of the
objects they touch, as the EPIC-100 hand-object library's ``get_hand_object_interactions`` pairs
them: a hand in any state but NO_CONTACT takes the object (score >= ``object_score``) whose centre
is nearest the hand's centre + its offset. Clipped to the image; no box, or one <= ``min_box_px``
wide or high, means the full frame. ``CROP_RULE_VERSION`` goes into the view's fingerprint.
"""
from __future__ import annotations

import functools
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from xmic.extract.box_rule import BoxError, check_box as _check, clip_box

NO_CONTACT = 0  # HandDetection.HandState: any other state is paired with an object
VIDEOS_KEPT = 8  # parsed videos a box source keeps (per process: the planner, each worker)
# box-source kinds whose hand-object pairing is not the EPIC-100 library's, as the hand-crop
# fingerprint records it (``crop.pairing``)
PAIRING = {"100doh": "filter_object in float32"}


# The released EPIC-100 hand-object schema (epic-kitchens/epic-kitchens-100-hand-object-bboxes,
# types.proto), written once here as descriptors, so no protoc step is needed. Field numbers and
# enum values must stay those of the release: tests/test_detections.py checks them.
@functools.cache
def hoa_messages() -> dict:
    """Message classes of the schema, built on first use (nothing is built at import)."""
    f = descriptor_pb2.FileDescriptorProto(name="xmic_hoa.proto", package="xmic.hoa",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name, fields, enums=()):
        m = f.message_type.add(name=name)
        for ename, values in enums:
            e = m.enum_type.add(name=ename)
            for i, v in enumerate(values):
                e.value.add(name=v, number=i)
        for num, (fname, ftype, tname, rep) in enumerate(fields, start=1):
            fd = m.field.add(name=fname, number=num, type=ftype,
                             label=T.LABEL_REPEATED if rep else T.LABEL_OPTIONAL)
            if tname:
                fd.type_name = tname
    msg("FloatVector", [("x", T.TYPE_FLOAT, None, 0), ("y", T.TYPE_FLOAT, None, 0)])
    msg("BBox", [(n, T.TYPE_FLOAT, None, 0) for n in ("left", "top", "right", "bottom")])
    msg("HandDetection", [("bbox", T.TYPE_MESSAGE, ".xmic.hoa.BBox", 0),
                          ("score", T.TYPE_FLOAT, None, 0),
                          ("state", T.TYPE_ENUM, ".xmic.hoa.HandDetection.HandState", 0),
                          ("object_offset", T.TYPE_MESSAGE, ".xmic.hoa.FloatVector", 0),
                          ("side", T.TYPE_ENUM, ".xmic.hoa.HandDetection.HandSide", 0)],
        enums=[("HandState", ["NO_CONTACT", "SELF_CONTACT", "ANOTHER_PERSON", "PORTABLE_OBJECT",
                              "STATIONARY_OBJECT"]), ("HandSide", ["LEFT", "RIGHT"])])
    msg("ObjectDetection", [("bbox", T.TYPE_MESSAGE, ".xmic.hoa.BBox", 0),
                            ("score", T.TYPE_FLOAT, None, 0)])
    msg("Detections", [("video_id", T.TYPE_STRING, None, 0), ("frame_number", T.TYPE_INT32, None, 0),
                       ("hands", T.TYPE_MESSAGE, ".xmic.hoa.HandDetection", 1),
                       ("objects", T.TYPE_MESSAGE, ".xmic.hoa.ObjectDetection", 1)])
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(f)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name])
            for name in ("BBox", "FloatVector", "HandDetection", "ObjectDetection", "Detections")}


class EpicVideo:
    """One video's EPIC-100 detections: frame number -> ``Detections`` message, boxes in [0, 1]."""
    kind = "epic-100"

    def __init__(self, items: list, path: Path, video_id: str):
        self.frames = {}
        for i, raw in enumerate(items):
            det = hoa_messages()["Detections"]()
            try:
                det.ParseFromString(bytes(raw))
            except Exception as e:
                raise BoxError(f"{path}: item {i} is not a Detections message ({e})") from None
            if det.video_id and det.video_id != video_id:
                raise BoxError(f"{path}: holds detections of video {det.video_id}, not {video_id}; "
                               "the file is misnamed or misplaced")
            self.frames[det.frame_number] = det
        self.path = path

    def has_hand(self, frame: int, hand_score: float) -> bool:
        det = self.frames.get(frame)
        return det is not None and any(h.score > hand_score for h in det.hands)

    def crop(self, frame: int, width: int, height: int, hand_score: float, object_score: float,
             min_box_px: float, where: str = ""):
        det = self.frames.get(frame)
        where = where or f"{self.path}: frame {frame}"
        return None if det is None else union_crop(det, width, height, hand_score, object_score,
                                                   min_box_px, where)


def load_video_detections(path: Path, video_id: str):
    """One video's pickle, in either format the folder may hold (``EpicVideo``: a list of
    serialized ``Detections``; ``DetectorVideo``: the 100DOH detector's dict), read through the
    restricted unpickler (plain data and numpy arrays; any other global is refused, nothing runs)."""
    from xmic.cache.safe_pickle import ForbiddenGlobal, RestrictedUnpickler
    from xmic.extract.detector_pickles import DetectorVideo
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
    if isinstance(data, list) and all(isinstance(b, (bytes, bytearray)) for b in data):
        return EpicVideo(data, path, video_id)
    if isinstance(data, dict) and "info" in data:
        return DetectorVideo(data, path, video_id)
    raise BoxError(f"{path}: neither EPIC-100 detections (a list of serialized Detections) nor the "
                   "100DOH detector's output (a dict with 'info' and one entry per frame); see "
                   "docs/hand-boxes.md")


def load_detection_pickle(path: Path, video_id: str) -> dict[int, object]:
    """frame_number -> Detections message of one EPIC-100 pickle."""
    v = load_video_detections(path, video_id)
    if not isinstance(v, EpicVideo):
        raise BoxError(f"{path}: holds 100DOH detector output, not EPIC-100 detections")
    return v.frames


def union_crop(detections, width: int, height: int, hand_score: float = 0.8,
               object_score: float = 0.01, min_box_px: float = 1.0, where: str = ""):
    """Crop box (l, t, r, b) in pixels from one frame's Detections, or None (full frame)."""
    boxes = []
    objects = [o for o in detections.objects if o.score >= object_score]
    obj_boxes = [_check((o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom), where)
                 for o in objects]
    for h in detections.hands:
        if not h.score > hand_score:  # the library's rule: strictly above (objects: >=)
            continue
        hb = _check((h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom), where)
        boxes.append(hb)
        if h.state != NO_CONTACT and obj_boxes:
            cx = (hb[0] + hb[2]) / 2 + h.object_offset.x
            cy = (hb[1] + hb[3]) / 2 + h.object_offset.y
            near = min(obj_boxes, key=lambda o: ((o[0] + o[2]) / 2 - cx) ** 2 + ((o[1] + o[3]) / 2 - cy) ** 2)
            boxes.append(near)
    if not boxes:
        return None
    l, t = min(b[0] for b in boxes) * width, min(b[1] for b in boxes) * height
    r, b = max(b[2] for b in boxes) * width, max(b[3] for b in boxes) * height
    return clip_box((l, t, r, b), width, height, min_box_px)


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
    """Crop boxes for (video, segment, frame) from one of the three inputs."""

    def __init__(self, path: str | Path, hand_score: float = 0.8, object_score: float = 0.01,
                 min_box_px: float = 1.0, detections: str | None = None, trimmed: bool = False):
        self.path = Path(path)
        self.trimmed = trimmed  # each video a trimmed clip: its pickle may number from 0
        self._numbering: dict[str, str | None] = {}
        self.thresholds = (hand_score, object_score, min_box_px)
        self.detections = detections  # a folder's format, when known (``describe`` at plan)
        self._videos: OrderedDict[str, object] = OrderedDict()  # the last VIDEOS_KEPT read
        self._table = None  # a BoxTable (xmic.extract.box_tables)
        from xmic.extract.box_tables import read_box_table, read_xmic_boxes
        if self.path.is_dir():
            self.kind = "detections"
        elif self.path.suffix in (".parquet", ".csv"):
            self.kind = "table"
            self._table = read_box_table(self.path)
        elif self.path.suffix in (".pkl", ".pickle"):
            self.kind = "xmic-boxes"
            self._table = read_xmic_boxes(self.path)
        else:
            raise BoxError(f"{self.path}: not a folder of detection pickles, a .pkl box dict, or a "
                           ".parquet/.csv box table")

    def video(self, video_id: str):
        """The loaded detections of one video (folder sources); the last ``VIDEOS_KEPT`` stay
        loaded (segments come sorted by video: memory is bounded by a few videos, not the
        split)."""
        if video_id in self._videos:
            self._videos.move_to_end(video_id)
        else:
            where = f"{self.path}: video {video_id}"
            if "/" in video_id or "\\" in video_id or video_id in ("", ".", ".."):
                raise BoxError(f"{self.path}: video id {video_id!r} is not a plain file name")
            from xmic.extract.media import media_path
            v = load_video_detections(media_path(self.path, f"{video_id}.pkl", where=where),
                                      video_id)
            if self.detections not in (None, "detections") and v.kind != self.detections:
                raise BoxError(f"{v.path}: holds {v.kind} detections, but this cache's boxes are "
                               f"{self.detections}; one box folder holds one format")
            self._videos[video_id] = v
            while len(self._videos) > VIDEOS_KEPT:
                self._videos.popitem(last=False)
        return self._videos[video_id]

    def has_video(self, video_id: str) -> bool:
        """Whether a folder source holds the video's pickle."""
        return (self.path / f"{video_id}.pkl").is_file()

    def numbering(self, video_id: str, span=None) -> str | None:
        """How a folder source's pickle numbers a trimmed clip's frames (``FRAME_KEYS``), decided
        once per video from its keys and the clip's ``span`` (start, stop); None elsewhere."""
        if self.kind != "detections" or not self.trimmed or span is None:
            return None
        if video_id not in self._numbering:
            v = self.video(video_id)
            self._numbering[video_id] = clip_numbering(v.frames, span[0], span[1], v.path)
        return self._numbering[video_id]

    def _offset(self, video_id: str, span) -> int:
        """Annotation frame number minus the pickle's key for the same frame."""
        return int(span[0]) if self.numbering(video_id, span) == "clip" else 0

    def frames_with_boxes(self, video_id: str, segment_id: str, span=None):
        """Sorted frame numbers [n], as the annotations number them, that the source holds an
        entry for (the detector ran on them)."""
        if self.kind == "detections":
            keys = np.sort(np.fromiter(self.video(video_id).frames, np.int64))
            return keys + self._offset(video_id, span)
        t = self._table
        return t.frames(segment_id if t.key_kind == "segment" else video_id)

    def usable_frames(self, video_id: str, segment_id: str, frames, span=None) -> np.ndarray:
        """Bool [n]: which of ``frames`` have a usable box: a hand above ``hand_score`` for
        detections (its crop may still be too small: extraction counts those fallbacks), an
        entry for box tables and X-MIC box pickles."""
        if self.kind != "detections":
            have = self.frames_with_boxes(video_id, segment_id)
            return np.isin(np.asarray(frames, np.int64), have)
        v, off = self.video(video_id), self._offset(video_id, span)
        return np.array([v.has_hand(int(f) - off, self.thresholds[0]) for f in frames], bool)

    def describe(self, video_id: str | None = None) -> str:
        """The source's kind for the fingerprint (epic-100 | 100doh | table | xmic-boxes): a
        folder's format is read from one of its pickles."""
        if self.kind != "detections":
            return self.kind
        if self.detections is None and video_id is not None:
            self.detections = self.video(video_id).kind
        return self.detections or "detections"

    def box(self, video_id: str, segment_id: str, frame: int, width: int, height: int, span=None):
        """The crop box of annotation frame ``frame`` (``span``: a trimmed clip's start and
        stop, which tell how its pickle numbers frames), or None for the full frame."""
        where = f"{self.path}: video {video_id}, segment {segment_id}, frame {frame}"
        hs, os_, mp = self.thresholds
        if self.kind == "detections":
            key = frame - self._offset(video_id, span)
            return self.video(video_id).crop(key, width, height, hs, os_, mp, where)
        t = self._table
        raw = t.box(segment_id if t.key_kind == "segment" else video_id, frame)
        return None if raw is None else clip_box(_check(raw, where), width, height, mp)


def view_tensors(images, frames: list[int], views, transform, box_of=None) -> dict:
    """{view: [n, 3, H, W]} of one segment's decoded frames: ``full_frame`` is each image,
    ``hand_crop`` each image cropped to ``box_of(frame, image)`` (None: the full frame),
    both through ``transform`` (the encoder's ``pixels``: resized and centre-cropped uint8, the
    arithmetic left to the encoder's device). Extraction and ``predict`` both go through here."""
    import torch
    out = {}
    if "full_frame" in views:
        out["full_frame"] = torch.stack([transform(im) for im in images])
    if "hand_crop" in views:
        crops = []
        for f, im in zip(frames, images):
            box = box_of(f, im) if box_of is not None else None
            crops.append(transform(im.crop(box) if box else im))
        out["hand_crop"] = torch.stack(crops)
    return out

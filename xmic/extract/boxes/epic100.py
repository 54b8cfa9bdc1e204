"""EPIC-100's released hand-object detections: one video's pickled list of serialized
``Detections`` protobuf messages (github.com/epic-kitchens/epic-kitchens-100-hand-object-bboxes,
``types.proto``), boxes as ``left, top, right, bottom`` in [0, 1] of the frame.

Input: the unpickled list and its file (``xmic.extract.boxes.folder`` reads it through the
restricted unpickler). Output: ``EpicVideo.crop(frame, width, height, ...)`` -> the crop box in
pixels or None; ``has_hand`` for the coverage check. The crop is the union of hands with score
> ``hand_score`` and of the objects they touch, as the library's
``get_hand_object_interactions`` pairs them: a hand in any state but NO_CONTACT takes the object
(score >= ``object_score``) whose centre is nearest the hand's centre + its offset
(``union_crop``). The schema is written once here as descriptors (``hoa_messages``), so no
protoc step is needed; tests/test_detections.py ties it to the released field numbers.
"""
from __future__ import annotations

import functools
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from xmic.extract.boxes.rule import BoxError, check_box, clip_box

NO_CONTACT = 0  # HandDetection.HandState: any other state is paired with an object


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
    box_format = "epic-100"
    pairing = None  # the EPIC-100 library's own rule: the crop rule's default

    @staticmethod
    def matches(data) -> bool:
        """A pickle of this format: a list of serialized ``Detections`` messages."""
        return isinstance(data, list) and all(isinstance(b, (bytes, bytearray)) for b in data)

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


def union_crop(detections, width: int, height: int, hand_score: float = 0.8,
               object_score: float = 0.01, min_box_px: float = 1.0, where: str = ""):
    """Crop box (l, t, r, b) in pixels from one frame's Detections, or None (full frame)."""
    boxes = []
    objects = [o for o in detections.objects if o.score >= object_score]
    obj_boxes = [check_box((o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom), where)
                 for o in objects]
    for h in detections.hands:
        if not h.score > hand_score:  # the library's rule: strictly above (objects: >=)
            continue
        hb = check_box((h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom), where)
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

"""Hand-object detections: the crop rule as the EPIC-100 library pairs hands and objects, the
refused detection pickles, and the schema tied to the released field numbers."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from xmic.extract.boxes import BoxError
from xmic.extract.boxes.epic100 import hoa_messages, union_crop
from xmic.extract.boxes.folder import load_detection_pickle


def det(*hands, objects=()):
    d = hoa_messages()["Detections"](video_id="v", frame_number=1)
    for box, score, state, off in hands:
        h = d.hands.add(score=score, state=state)
        h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = box
        h.object_offset.x, h.object_offset.y = off
    for box, score in objects:
        o = d.objects.add(score=score)
        o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = box
    return d


def test_crop_union_rule():
    hand = ((0.1, 0.1, 0.2, 0.2), 0.9, 3, (0.3, 0.0))
    near, far = ((0.4, 0.1, 0.5, 0.2), 0.5), ((0.8, 0.8, 0.9, 0.9), 0.5)
    assert union_crop(det(hand, objects=[near, far]), 100, 100) == pytest.approx((10, 10, 50, 20))
    no_contact = ((0.1, 0.1, 0.2, 0.2), 0.9, 0, (0.3, 0.0))
    assert union_crop(det(no_contact, objects=[near]), 100, 100) == pytest.approx((10, 10, 20, 20))
    for state in (1, 2, 4):  # self contact, another person, stationary: paired like portable
        touching = ((0.1, 0.1, 0.2, 0.2), 0.9, state, (0.3, 0.0))
        assert union_crop(det(touching, objects=[near, far]), 100, 100) == pytest.approx((10, 10, 50, 20))
    # hands: score > threshold, strictly; objects: score >= threshold (0.75, 0.25 exact in float32)
    at_threshold = ((0.1, 0.1, 0.2, 0.2), 0.75, 3, (0.3, 0.0))
    assert union_crop(det(at_threshold, objects=[near]), 100, 100, hand_score=0.75) is None
    obj_at = ((0.4, 0.1, 0.5, 0.2), 0.25)
    assert union_crop(det(hand, objects=[obj_at]), 100, 100, object_score=0.25) == \
        pytest.approx((10, 10, 50, 20))
    weak = ((0.1, 0.1, 0.2, 0.2), 0.5, 3, (0.3, 0.0))
    assert union_crop(det(weak, objects=[near]), 100, 100) is None           # hand under 0.8
    assert union_crop(det(hand, objects=[((0.4, 0.1, 0.5, 0.2), 0.005)]), 100, 100) == \
        pytest.approx((10, 10, 20, 20))                                          # object under 0.01
    two = ((0.6, 0.5, 0.7, 0.7), 0.85, 1, (0, 0))
    assert union_crop(det(hand, two), 100, 100) == pytest.approx((10, 10, 70, 70))
    assert union_crop(det(((0.5, 0.5, 0.505, 0.6), 0.9, 0, (0, 0))), 100, 100) is None  # <= 1 px
    assert union_crop(det(((-0.2, -0.1, 0.3, 1.4), 0.9, 0, (0, 0))), 100, 50) == pytest.approx((0, 0, 30, 50))
    with pytest.raises(BoxError, match="NaN"):
        union_crop(det(((float("nan"), 0.1, 0.2, 0.2), 0.9, 0, (0, 0))), 100, 100, where="x")
    with pytest.raises(BoxError, match="negative size"):
        union_crop(det(((0.3, 0.1, 0.2, 0.2), 0.9, 0, (0, 0))), 100, 100, where="x")


def test_detection_pickles_refused(tmp_path):
    p = tmp_path / "P01_01.pkl"
    p.write_bytes(pickle.dumps([hoa_messages()["Detections"](video_id="P02_01").SerializeToString()]))
    with pytest.raises(BoxError, match="holds detections of video P02_01, not P01_01"):
        load_detection_pickle(p, "P01_01")
    p.write_bytes(pickle.dumps([np.ones(2)]))
    with pytest.raises(BoxError, match="neither EPIC-100 detections .* nor the 100DOH detector"):
        load_detection_pickle(p, "P01_01")


def test_hoa_schema_has_the_released_field_numbers():
    """The one definition of the hand-object schema (detections.hoa_messages) against the
    released EPIC-100 types.proto: field numbers, types and enum values decide how the
    detection pickles parse."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    released = {
        "FloatVector": {"x": (1, FD.TYPE_FLOAT), "y": (2, FD.TYPE_FLOAT)},
        "BBox": {"left": (1, FD.TYPE_FLOAT), "top": (2, FD.TYPE_FLOAT),
                 "right": (3, FD.TYPE_FLOAT), "bottom": (4, FD.TYPE_FLOAT)},
        "HandDetection": {"bbox": (1, FD.TYPE_MESSAGE), "score": (2, FD.TYPE_FLOAT),
                          "state": (3, FD.TYPE_ENUM), "object_offset": (4, FD.TYPE_MESSAGE),
                          "side": (5, FD.TYPE_ENUM)},
        "ObjectDetection": {"bbox": (1, FD.TYPE_MESSAGE), "score": (2, FD.TYPE_FLOAT)},
        "Detections": {"video_id": (1, FD.TYPE_STRING), "frame_number": (2, FD.TYPE_INT32),
                       "hands": (3, FD.TYPE_MESSAGE), "objects": (4, FD.TYPE_MESSAGE)},
    }
    msgs = hoa_messages()
    for name, fields in released.items():
        got = {f.name: (f.number, f.type) for f in msgs[name].DESCRIPTOR.fields}
        assert got == fields, name
    hand = msgs["HandDetection"].DESCRIPTOR
    assert {v.name: v.number for v in hand.enum_types_by_name["HandState"].values} == {
        "NO_CONTACT": 0, "SELF_CONTACT": 1, "ANOTHER_PERSON": 2, "PORTABLE_OBJECT": 3,
        "STATIONARY_OBJECT": 4}
    assert {v.name: v.number for v in hand.enum_types_by_name["HandSide"].values} == {
        "LEFT": 0, "RIGHT": 1}
    d = msgs["Detections"].DESCRIPTOR
    assert d.fields_by_name["hands"].is_repeated and d.fields_by_name["objects"].is_repeated
    assert not d.fields_by_name["video_id"].is_repeated

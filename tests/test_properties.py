"""Property-based checks (Hypothesis) of what turns user and file input into paths and numbers:
whatever the string, a checked name or media path never leaves its root; whatever the value, a
config field is either accepted within its stated bound or refused with a ConfigError; whatever
the shape of a recipe's fields, it loads or is refused with a ConfigError, never a traceback."""
from __future__ import annotations

import dataclasses
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmic.cache.datasets import DatasetError
from xmic.files.names import BadName, check_name
from xmic.config import ConfigError, load_config
from xmic.extract.media import check_media_id, media_path
from xmic.train.config import TrainConfig

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
PATHY = st.lists(st.sampled_from(list("ab./\\_-~0") + ["..", "\0", "é", "P01"]),
                 max_size=8).map("".join)


@FAST
@given(PATHY)
def test_a_checked_name_is_one_plain_component(name):
    try:
        check_name("dataset", name)
    except BadName:
        return
    assert "/" not in name and "\\" not in name and name not in (".", "..") and name[0] != "."


@FAST
@given(st.lists(PATHY, min_size=1, max_size=4))
def test_a_media_path_never_leaves_its_root(tmp_path, parts):
    root = tmp_path / "root"
    try:
        p = media_path(root, *parts)
    except DatasetError:
        return
    base = os.path.normpath(str(root))
    assert os.path.commonpath([base, os.path.normpath(str(p))]) == base
    assert ".." not in p.relative_to(root).parts


@FAST
@given(st.sampled_from(["epic", "ego4d", "egtea", "csv"]), PATHY)
def test_an_accepted_media_id_builds_an_inside_path(tmp_path, kind, vid):
    try:
        check_media_id(kind, vid, "row 1")
    except DatasetError:
        return
    if kind == "epic":
        media_path(tmp_path, vid.split("_")[0], "rgb_frames", vid)
    else:
        media_path(tmp_path, vid if kind == "csv" else vid + ".mp4")


def _numeric_fields(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not
                                    dataclasses.MISSING else None):
            yield from _numeric_fields(f.default_factory, f"{prefix}{f.name}.")
        elif f.type in ("int", "float"):
            yield f"{prefix}{f.name}", f


FIELDS = list(_numeric_fields(TrainConfig))


@FAST
@given(st.sampled_from(FIELDS), st.one_of(st.integers(-10**30, 10**30),
                                          st.floats(allow_nan=True, allow_infinity=True)))
def test_every_number_is_bounded_when_read(field, value):
    key, f = field
    try:
        cfg = load_config(TrainConfig, None, [f"{key}={value!r}"])
    except ConfigError:
        return
    got = cfg
    for part in key.split("."):
        got = getattr(got, part)
    if "bounds" in f.metadata:
        lo, hi = f.metadata["bounds"]
        assert lo <= got <= hi
    elif f.type == "int":
        assert -2**63 < got < 2**63
    else:  # an unbounded float (lr, weight decay) is checked finite by its config
        assert math.isfinite(got)


RECIPE_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**25), st.text(max_size=6),
              st.sampled_from(["noun", "verb", "xmic", "train", "epic"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["caches", "sources", "targets", "labels", "methods",
                                        "seeds", "train", "class_splits"]), RECIPE_VALUES))
def test_any_recipe_shape_loads_or_is_refused_in_one_line(tmp_path_factory, data):
    import yaml
    from xmic.grid.recipe import load_recipe
    path = tmp_path_factory.getbasetemp() / "prop-recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        r = load_recipe(str(path))
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in r.seeds)
    assert len(set(r.seeds)) == len(r.seeds) and set(r.labels) <= {"noun", "verb"}


ROW = ["method", "label", "split", "seed"]
SPACES = st.text(" \t", max_size=2)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ROW + ["epochs", "model.alpha"]), SPACES, SPACES,
       st.sampled_from(["train", "methods"]))
def test_an_override_key_is_the_key_it_spells(tmp_path_factory, key, before, after, where):
    """However a recipe key is padded, the row guard sees the key it spells: a row key is
    always refused, any other key is applied as that key."""
    import yaml
    from xmic.grid.recipe import load_recipe
    spelled = ".".join(before + part + after for part in key.split("."))
    over = {spelled: {"method": "zeroshot", "label": "verb", "split": "validation", "seed": 1,
                      "epochs": 1, "model.alpha": 1.0}[key]}
    data = {"caches": {"epic": "c"}, "sources": {"epic": "train"}, "targets": {"epic": "val"},
            "labels": ["noun"], "methods": {"xmic": over if where == "methods" else {}},
            "train": over if where == "train" else {}}
    path = tmp_path_factory.getbasetemp() / "prop-keys.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        r = load_recipe(str(path))
    except ConfigError as e:
        assert key in ROW and "define a row of the grid" in str(e) or "named after method" in str(e)
        return
    assert key not in ROW
    got = r.train if where == "train" else r.methods["xmic"]
    assert list(got) == [key]


DETECTOR_ARRAYS = st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 12)).flatmap(
    lambda s: st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                       min_size=s[0] * s[1], max_size=s[0] * s[1]).map(
        lambda v, s=s: __import__("numpy").array(v, "float32").reshape(s))))


@FAST
@given(DETECTOR_ARRAYS, DETECTOR_ARRAYS, st.one_of(st.integers(-3, 2**40), st.booleans()))
def test_any_detector_record_is_read_or_refused_naming_the_frame(hands, objects, key):
    """Whatever shapes and values a 100DOH record holds, it is read with the detector's widths
    (hands [n, 10], objects [m, >=5], float32) or refused with a BoxError naming the frame."""
    import numpy as np
    from xmic.extract.boxes import BoxError
    from xmic.extract.boxes.detector import DetectorVideo
    data = {"info": {"width": 100, "height": 80}, key: {"hand_dets": hands, "obj_dets": objects}}
    try:
        v = DetectorVideo(data, "v.pkl", "v")
    except BoxError as e:
        assert "v.pkl" in str(e) and "\n" not in str(e)
        return
    (h, o), = v.frames.values()
    assert h.dtype == o.dtype == np.float32 and h.shape[1] == 10 and o.shape[1] >= 5
    assert np.isfinite(h).all() and np.isfinite(o[:, :5]).all()
    box = v.crop(int(key), 100, 80, 0.5, 0.01, 1.0)
    assert box is None or (0 <= box[0] < box[2] <= 100 and 0 <= box[1] < box[3] <= 80)


def test_hypothesis_is_exercised():
    assert len(FIELDS) > 15  # every numeric training field is drawn from
    with pytest.raises(ConfigError):
        load_config(TrainConfig, None, ["epochs=10000000"])

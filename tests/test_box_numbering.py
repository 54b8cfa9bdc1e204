"""Trimmed clips (EGTEA): detection pickles numbered from 0 over the clip or by the parent
video's frames give the same crops; ambiguous and non-overlapping files are refused at plan;
EGTEA's shipped layout ROOT/{video}/{clip}.mp4 is read; the usable-box share at plan and the
fallbacks counted while encoding equal the handless frames in the data."""
from __future__ import annotations

import json

import pytest

from extract_data import EGTEA_CLIPS, TINY, egtea_handless, make_egtea
from helpers import assert_same_features, run_xmic
from xmic.cache import Cache
from xmic.cache.reader import load_split
from xmic.cache.sampling import frames_to_store
from xmic.extract.boxes.rule import BoxError, clip_numbering
from xmic.extract.planning import PlanError, SplitSource, plan

RUN = ["--model", TINY, "--weights", "random", "--workers", "0", "--device", "cpu"]


def extract(world: dict, cache, *more):
    cp = run_xmic("extract", "plan", cache, "--dataset", "egtea", "--split", "test",
                  "--annotations", world["annotations"], "--root", world["root"],
                  "--boxes", world["boxes"], *more)
    return cp.stdout, run_xmic("extract", "run", cache, *RUN).stdout


def expected_fallbacks() -> tuple[int, int]:
    """(frames encoded, of them handless) of the generated clips, from the data itself."""
    rows = fell = 0
    for clip, _, _ in EGTEA_CLIPS:
        start, stop = (int(x) for x in clip.rsplit("-F", 2)[1:])
        frames = frames_to_store("epic", start, stop)
        rows += len(frames)
        fell += sum(egtea_handless(f - start) for f in frames)
    return rows, fell


def test_both_numberings_and_both_layouts_give_the_same_hand_crops(tmp_path):
    a = make_egtea(tmp_path / "a", numbering="clip", layout="shipped")
    b = make_egtea(tmp_path / "b", numbering="video", layout="flat")
    plan_a, run_a = extract(a, tmp_path / "ca")
    plan_b, _ = extract(b, tmp_path / "cb")
    assert "clip pickles numbered from 0 over the clip (3)" in plan_a, plan_a
    assert "clip pickles numbered by the parent video's frames (3)" in plan_b, plan_b
    assert_same_features(tmp_path / "ca", tmp_path / "cb", split="test")
    crop = {c: Cache.open(tmp_path / c).view("hand_crop")["fingerprint"]["crop"] for c in ("ca", "cb")}
    assert crop["ca"]["frame_keys"] == "clip" and "frame_keys" not in crop["cb"]  # as before
    assert crop["ca"]["boxes"] == "100doh"
    # the crops are crops: where a hand was found, the row differs from the full frame's
    d = load_split(Cache.open(tmp_path / "ca"), ["full_frame", "hand_crop"], "test")
    full, hand = d.views["full_frame"].features, d.views["hand_crop"].features
    same = (full == hand).all(axis=1)
    rows, fell = expected_fallbacks()
    assert len(same) == rows and int(same.sum()) == fell
    # the fallbacks are counted exactly, at run, in the markers and in `cache info`
    assert f"test: {fell} of {rows} hand-crop frames ({100 * fell / rows:.1f}%) fell back" in run_a
    info = json.loads(run_xmic("cache", "info", tmp_path / "ca", "--json").stdout)
    got = info["views"]["hand_crop"]["fallbacks"]["test"]
    assert (got["rows"], got["fallback_rows"]) == (rows, fell)
    assert "fallbacks" not in info["views"]["full_frame"]
    assert f"test: {fell} of {rows} hand-crop frames" in run_xmic("cache", "info", tmp_path / "ca").stdout
    # and plan said as much before: usable = frames to encode with a hand
    assert f"usable hand boxes (egtea test): {rows - fell} of the {rows} frames to encode" in plan_a


def test_ambiguous_and_foreign_numberings_are_refused_naming_the_ranges(tmp_path):
    clip = EGTEA_CLIPS[2][0]  # starts at frame 5: its two ranges overlap
    w = make_egtea(tmp_path / "w", keys={clip: range(8, 30)})  # the detector skipped frames
    with pytest.raises(PlanError, match=rf"(?s){clip}.pkl: its frame keys 8..29 fit both of the "
                                        r"clip's numberings: from 0 over the clip \(0..39\) or by "
                                        r"the parent video's frames \(5..44\)"):
        plan(tmp_path / "c", SplitSource("egtea", w["annotations"], w["root"], "test",
                                         boxes=w["boxes"]))
    w = make_egtea(tmp_path / "x", keys={clip: range(500, 520)})
    with pytest.raises(PlanError, match=r"its frame keys 500..519 fit neither"):
        plan(tmp_path / "c", SplitSource("egtea", w["annotations"], w["root"], "test",
                                         boxes=w["boxes"]))
    assert not (tmp_path / "c").exists()
    # the rule itself: the range holding more keys; a clip starting at 0 has one numbering
    assert clip_numbering(range(0, 40), 5, 44, "f") == "clip"
    assert clip_numbering(range(5, 45), 5, 44, "f") == "video"
    assert clip_numbering(range(0, 40), 0, 39, "f") == "video"
    assert clip_numbering([], 5, 44, "f") is None
    with pytest.raises(BoxError):
        clip_numbering(range(10, 20), 5, 44, "f")


def test_low_usable_coverage_is_refused_unless_allowed(tmp_path):
    w = make_egtea(tmp_path / "w", numbering="video")
    common = ["--dataset", "egtea", "--split", "test", "--annotations", w["annotations"],
              "--root", w["root"], "--boxes", w["boxes"]]
    cp = run_xmic("extract", "plan", tmp_path / "c", *common, "--set", "hand_score=0.99",
                  check=False)
    assert cp.returncode == 2 and "only 0.0% of the" in cp.stderr, cp.stderr
    assert "hand_score=0.99 (the floor is 50%)" in cp.stderr and "--allow-low-coverage" in cp.stderr
    assert not (tmp_path / "c").exists()
    cp = run_xmic("extract", "plan", tmp_path / "c", *common, "--coverage-floor", "75",
                  check=False)  # 70 % of the frames have a hand: below a floor of 75 %
    assert cp.returncode == 2 and "only 70.6% of the 102 frames" in cp.stderr, cp.stderr
    assert "(the floor is 75%)" in cp.stderr
    cp = run_xmic("extract", "plan", tmp_path / "c", *common, "--set", "hand_score=0.99",
                  "--allow-low-coverage")
    assert "(0.0%) have a hand above hand_score=0.99" in cp.stdout
    # run takes the plan's threshold: every hand crop is the full frame, and it says so
    out = run_xmic("extract", "run", tmp_path / "c", *RUN).stdout
    rows, _ = expected_fallbacks()
    assert f"test: {rows} of {rows} hand-crop frames (100.0%) fell back" in out
    assert Cache.open(tmp_path / "c").view("hand_crop")["fingerprint"]["crop"]["hand_score"] == 0.99
    cp = run_xmic("extract", "plan", tmp_path / "d", *common, "--set", "model=x", check=False)
    assert cp.returncode == 2 and "plan takes only hand_score" in cp.stderr


def test_contact_sheets_show_the_crops_and_the_fallbacks_without_touching_the_cache(tmp_path):
    from PIL import Image
    from xmic.extract.contact_sheet import contact_sheet
    w = make_egtea(tmp_path / "w", numbering="clip", layout="shipped")
    extract(w, tmp_path / "c")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*")}
    clip = EGTEA_CLIPS[0][0]
    start = int(clip.rsplit("-F", 2)[1])
    png, s = contact_sheet(tmp_path / "c", clip, shown=40)
    assert s["frames_shown"] == frames_to_store("epic", start, start + 39)  # every stored frame
    fell = [f for f in s["frames_shown"] if egtea_handless(f - start)]
    assert s["fell_back_shown"] == fell and s["fallbacks_recorded"] == fell
    assert s["frame_keys"] == "clip" and s["thresholds"]["hand_score"] == 0.8
    with Image.open(__import__("io").BytesIO(png)) as im:
        assert im.width > 800 and im.height > 400
    cp = run_xmic("cache", "show", tmp_path / "c", "--fallbacks", "2", "--out", tmp_path / "sheets")
    assert len(list((tmp_path / "sheets").glob("*.png"))) == 2, cp.stdout
    assert "shown fell back" in cp.stdout and "recorded" in cp.stdout
    cp = run_xmic("cache", "show", tmp_path / "c", clip, "--out", tmp_path / "c" / "x", check=False)
    assert cp.returncode == 2 and "inside the cache" in cp.stderr
    cp = run_xmic("cache", "show", tmp_path / "c", "nope", "--out", tmp_path / "s2", check=False)
    assert cp.returncode == 2 and "no segment 'nope' in the plan" in cp.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*")} == before

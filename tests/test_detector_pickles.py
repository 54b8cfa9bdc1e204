"""Hand-object boxes from the 100DOH detector's own output: its column order and pairing rule
(``filter_object``), scaling to the decoded frame, the crop thresholds, bad files refused with
file and frame named; an Ego4D world with such boxes planned (coverage report) and extracted
equal to the same boxes given as a pixel table; inputs changed at re-plan."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extract_data import H, TINY, W, make_ego4d
from helpers import assert_same_features, run_xmic
from xmic.extract.boxes import BoxError, open_boxes
from xmic.extract.boxes.detector import DetectorVideo
from xmic.extract.boxes.folder import load_video_detections
from xmic.extract.planning import PlanError, PlanPolicy, SplitSource, plan

HD_W, HD_H = 640, 480  # the detector saw frames 10x the decoded ones (64 x 48)


def hand(x1, y1, x2, y2, score=0.9, state=3.0, mag=0.0, dx=0.0, dy=0.0, side=1.0):
    return [x1, y1, x2, y2, score, state, mag, dx, dy, side]


def obj(x1, y1, x2, y2, score=0.6):
    return [x1, y1, x2, y2, score, 0, 0, 0, 0, 0]


def video(frames: dict, w=HD_W, h=HD_H) -> dict:
    out = {"info": {"width": w, "height": h}}
    for f, (hands, objs) in frames.items():
        out[f] = {"hand_dets": None if hands is None else np.array(hands, np.float32),
                  "obj_dets": None if objs is None else np.array(objs, np.float32)}
    return out


def crop(data, frame, width=W, height=H, hand_score=0.8, object_score=0.01):
    return DetectorVideo(data, "v.pkl", "v").crop(frame, width, height, hand_score, object_score, 1.0)


def test_columns_and_the_detectors_pairing_rule():
    near, far = obj(100, 100, 140, 140), obj(500, 300, 560, 380)
    # offset magnitude x 10000 x (dx, dy) points from the hand's centre (250, 250) to (530, 340)
    to_far = hand(200, 200, 300, 300, mag=0.0001 * 2.8, dx=100.0, dy=32.142857)
    data = video({1: ([to_far], [near, far]),
                  2: ([hand(200, 200, 300, 300)], [near, far]),          # no offset: nearest
                  3: ([hand(200, 200, 300, 300, state=0.0)], [near, far]),  # no contact
                  4: ([hand(200, 200, 300, 300, score=0.7)], [near]),       # not above 0.8
                  5: ([hand(200, 200, 300, 300)], [obj(100, 100, 140, 140, score=0.005)]),
                  6: (None, [near]), 7: ([to_far], None)})
    s = 64 / 640  # scaled to the decoded 64 x 48 frame (the same factor both ways)
    assert crop(data, 1) == pytest.approx((200 * s, 200 * s, 560 * s, 380 * s))
    assert crop(data, 2) == pytest.approx((100 * s, 100 * s, 300 * s, 300 * s))
    assert crop(data, 3) == pytest.approx((200 * s, 200 * s, 300 * s, 300 * s))
    assert crop(data, 4) is None and crop(data, 6) is None and crop(data, 99) is None
    assert crop(data, 4, hand_score=0.5) == pytest.approx((100 * s, 100 * s, 300 * s, 300 * s))
    assert crop(data, 5) == pytest.approx((200 * s, 200 * s, 300 * s, 300 * s))  # object < 0.01
    assert crop(data, 7) == pytest.approx((200 * s, 200 * s, 300 * s, 300 * s))
    # a detector frame of another shape scales each axis on its own; boxes are clipped
    wide = video({1: ([hand(0, 0, 1280, 360)], None)}, w=1280, h=720)
    assert crop(wide, 1) == pytest.approx((0, 0, W, H / 2))


def test_bad_detector_files_name_file_and_frame(tmp_path):
    def refused(data, match):
        p = tmp_path / "P01_01.pkl"
        p.write_bytes(pickle.dumps(data) if not isinstance(data, bytes) else data)
        with pytest.raises(BoxError, match=match):
            load_video_detections(p, "P01_01")
    ok = [hand(1, 1, 9, 9)]
    refused(video({3: (np.ones((1, 9)).tolist(), None)}), r"frame 3.*hand_dets has shape \[1, 9\]")
    refused(video({3: (None, [[1, 2, 3]])}), r"frame 3.*obj_dets has shape \[1, 3\].*at least 5")
    refused(video({4: ([hand(float("nan"), 1, 9, 9)], None)}), r"frame 4.*hand_dets holds NaN")
    refused(video({5: ([hand(9, 1, 1, 9)], None)}), r"frame 5.*negative size")
    refused(video({-2: (ok, None)}), r"frame -2.*frame numbers")
    refused(video({"7": (ok, None)}), r"frame '7'.*frame numbers")
    refused(video({1: (ok, None)}, w=0), r"frame size of 0x480.*> 0")
    refused({"info": "640x480", 1: {}}, r"'info' must be")
    refused({"frames": []}, r"neither EPIC-100 detections .* nor the 100DOH")

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {tmp_path / 'ran'}",)
    refused(pickle.dumps({"info": {"width": 1, "height": 1}, 1: Payload()}),
            r"refused, nothing of it was run: global 'posix.system'")
    assert not (tmp_path / "ran").exists()


def write_detector_boxes(world: dict, folder) -> dict:
    """100DOH pickles for the Ego4D world's clips (the hand and object area of every frame)
    and the crop boxes they imply, in pixels of the decoded frames, as a table."""
    folder.mkdir()
    rows = {"video_id": [], "frame": [], "left": [], "top": [], "right": [], "bottom": []}
    for clip in ("clipA", "clipB"):
        frames = {f: ([hand(200, 100, 300, 300, mag=0.0, state=3.0)], [obj(350, 100, 400, 200)])
                  for f in range(0, 240, 2)}  # every second frame, as a subsampled detector run
        frames[7] = ([hand(200, 100, 300, 300, state=0.0, score=0.6)], None)  # low score
        (folder / f"{clip}.pkl").write_bytes(pickle.dumps(video(frames)))
        for f in range(0, 240, 2):
            for k, v in zip(("left", "top", "right", "bottom"), (20.0, 10.0, 40.0, 30.0)):
                rows[k].append(v)
            rows["video_id"].append(clip)
            rows["frame"].append(f)
    pq.write_table(pa.table(rows), folder.parent / "boxes.parquet")
    return rows


def test_ego4d_with_detector_boxes_plans_with_coverage_and_extracts(tmp_path):
    g = make_ego4d(tmp_path / "g", frames=240)
    write_detector_boxes(g, tmp_path / "det")
    common = ["--dataset", "ego4d", "--annotations", g["annotations"], "--root", g["root"],
              "--split", "val", "--taxonomy", g["taxonomy"], "--shard-size", "2"]
    cp = run_xmic("extract", "plan", tmp_path / "c", *common, "--boxes", tmp_path / "det")
    assert "hand boxes (100doh) on 4 segments (100.0%) and 50.0% of" in cp.stdout, cp.stdout
    run_xmic("extract", "plan", tmp_path / "t", *common, "--boxes", tmp_path / "boxes.parquet")
    args = ["--model", TINY, "--weights", "random", "--workers", "0", "--device", "cpu"]
    for c in ("c", "t"):
        run_xmic("extract", "run", tmp_path / c, *args)
    assert_same_features(tmp_path / "c", tmp_path / "t", split="val")
    from xmic.cache import Cache
    crop = Cache.open(tmp_path / "c").view("hand_crop")["fingerprint"]["crop"]
    assert crop["boxes"] == "100doh" and crop["pairing"] == "filter_object in float32"
    assert "pairing" not in Cache.open(tmp_path / "t").view("hand_crop")["fingerprint"]["crop"]
    # a box folder missing a clip is refused at plan, naming it; --allow-missing plans it
    (tmp_path / "det" / "clipB.pkl").unlink()
    with pytest.raises(PlanError, match=r"(?s)1 video\(s\) with unusable hand boxes: clipB: .*"
                                        r"clipB.pkl not found"):
        plan(tmp_path / "m", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                         boxes=tmp_path / "det",
             side_files={"taxonomy": g["taxonomy"]}))
    s = plan(tmp_path / "m", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                         boxes=tmp_path / "det",
             side_files={"taxonomy": g["taxonomy"]}), policy=PlanPolicy(allow_missing=True))
    assert list(s["missing"]) == ["clipB"] and s["coverage"]["box_segments"] == 2


def test_replanning_from_other_inputs_says_what_changed(tmp_path):
    import shutil
    g = make_ego4d(tmp_path / "g", frames=240)
    moved = tmp_path / "moved"
    shutil.copytree(g["root"], moved)
    base = ["--dataset", "ego4d", "--annotations", g["annotations"], "--split", "val",
            "--taxonomy", g["taxonomy"], "--views", "full_frame", "--shard-size", "2"]
    cache = tmp_path / "c"
    run_xmic("extract", "plan", cache, *base, "--root", g["root"])
    cp = run_xmic("extract", "plan", cache, *base, "--root", moved)  # nothing committed yet
    assert f"inputs changed: root: {g['root'].resolve()} -> {moved.resolve()}" in cp.stdout
    run_xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
             "--device", "cpu")
    cp = run_xmic("extract", "plan", cache, *base, "--root", g["root"], check=False)
    assert cp.returncode == 2 and "split val was planned from other inputs (root: " in cp.stderr
    assert "2 committed shard(s) were made from the old ones (val-00000, val-00001)" in cp.stderr
    assert "--inputs moved" in cp.stderr and "--inputs changed" in cp.stderr
    cp = run_xmic("extract", "plan", cache, *base, "--root", g["root"], "--inputs", "moved")
    assert "2 committed shard(s) of view(s) full_frame kept" in cp.stdout
    cp = run_xmic("extract", "plan", cache, *base, "--root", moved, "--inputs", "changed")
    assert "2 committed shard(s) of view(s) full_frame superseded, to be redone" in cp.stdout
    assert "shards done 0 / pending 2" in run_xmic("cache", "info", cache).stdout


def test_the_demos_detector_pickles_give_its_box_tables_crops(demo_out):
    """The demo's Ego4D boxes as 100DOH output (pixels of frames twice the clips' size) and as
    a pixel table: the same crop on every frame after pairing and scaling."""
    import csv
    out, _ = demo_out
    ego = out / "world" / "ego4d"
    det, table = open_boxes(ego / "hand-objects"), open_boxes(ego / "boxes.csv")
    with open(ego / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 100
    for r in rows:
        vid, frame = r["video_id"], int(r["frame"])
        assert det.box(vid, "-", frame, 128, 96) == pytest.approx(table.box(vid, "-", frame, 128, 96))


def test_an_empty_box_folder_and_boxes_past_the_video_are_refused_at_plan(tmp_path):
    g = make_ego4d(tmp_path / "g", frames=240)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match=r"(?s)2 video\(s\) with unusable hand boxes: clipA: .*"
                                        r"clipA.pkl not found; clipB: .*clipB.pkl not found"):
        plan(tmp_path / "c", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                         boxes=tmp_path / "empty",
             side_files={"taxonomy": g["taxonomy"]}))
    write_detector_boxes(g, tmp_path / "det")
    data = pickle.loads((tmp_path / "det" / "clipA.pkl").read_bytes())
    data[5000] = data[0]  # the clip has 240 frames
    (tmp_path / "det" / "clipA.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(PlanError, match=r"(?s)1 video\(s\) with unusable box entries: clipA: .*"
                                        r"clipA.pkl: frame 5000 is outside the video \(its last "
                                        r"frame is 239\)"):
        plan(tmp_path / "c", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                         boxes=tmp_path / "det",
             side_files={"taxonomy": g["taxonomy"]}))
    assert not (tmp_path / "c").exists()  # nothing written for a refused plan


def test_a_box_table_with_text_in_a_number_column_is_one_line(tmp_path):
    (tmp_path / "b.csv").write_text("video_id,frame,left,top,right,bottom\nv,1,1,1,x,4\n")
    with pytest.raises(BoxError, match=r"b.csv: frame and box columns must be numbers"):
        open_boxes(tmp_path / "b.csv")


def test_new_boxes_redo_only_the_hand_crops(tmp_path):
    import shutil
    g = make_ego4d(tmp_path / "g", frames=240)
    write_detector_boxes(g, tmp_path / "det")
    shutil.copytree(tmp_path / "det", tmp_path / "det2")
    base = ["--dataset", "ego4d", "--annotations", g["annotations"], "--split", "val",
            "--taxonomy", g["taxonomy"], "--shard-size", "2", "--root", g["root"]]
    cache = tmp_path / "c"
    run_xmic("extract", "plan", cache, *base, "--boxes", tmp_path / "det")
    run_xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
             "--device", "cpu")
    cp = run_xmic("extract", "plan", cache, *base, "--boxes", tmp_path / "det2", "--inputs",
                  "changed")
    assert ("2 committed shard(s) of view(s) hand_crop superseded, to be redone; view(s) "
            "full_frame do not depend on the boxes and are kept") in cp.stdout, cp.stdout
    from xmic.cache import Cache
    c = Cache.open(cache)
    assert len(c.committed("full_frame")) == 2 and not c.committed("hand_crop")
    out = run_xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers",
                   "0", "--device", "cpu").stdout
    assert "views ['hand_crop']" in out and "views ['full_frame'" not in out


def detector_pairing(obj_dets: np.ndarray, hand: np.ndarray) -> int:
    """The 100DOH detector's ``filter_object`` for one hand in contact, written from its
    definition on the float32 arrays it holds: scalar by scalar, as the detector does."""
    centres = np.array([[(o[0] + o[2]) / 2, (o[1] + o[3]) / 2] for o in obj_dets])
    c = np.array([(hand[0] + hand[2]) / 2, (hand[1] + hand[3]) / 2])
    point = np.array([c[0] + hand[6] * 10000 * hand[7], c[1] + hand[6] * 10000 * hand[8]])
    return int(np.argmin(np.sum((centres - point) ** 2, axis=1)))


def test_pairing_is_the_detectors_float32_arithmetic_on_near_ties():
    from xmic.extract.boxes.detector import DetectorVideo
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(400):  # two objects at (nearly) the same distance from the offset's point
        x, y, w, h = (*rng.uniform(50, 900, 2), *rng.uniform(20, 200, 2))
        ang = rng.uniform(0, 2 * np.pi)
        hd = np.array([x, y, x + w, y + h, 0.9, 3, rng.uniform(1e-3, 3e-2), np.cos(ang),
                       np.sin(ang), 1], np.float32)
        p = (hd[0:2].astype(np.float64) + hd[2:4]) / 2 + float(hd[6]) * 1e4 * hd[7:9]
        d, t = rng.uniform(5, 80), rng.uniform(0, 2 * np.pi, 2)
        objs = np.array([[p[0] + d * np.cos(a) - s, p[1] + d * np.sin(a) - s,
                          p[0] + d * np.cos(a) + s, p[1] + d * np.sin(a) + s, 0.5]
                         for a, s in zip(t, rng.uniform(5, 50, 2))], np.float32)
        want = detector_pairing(objs, hd)
        o64, h64 = objs.astype(np.float64), hd.astype(np.float64)
        wide = int(np.argmin((((o64[:, :2] + o64[:, 2:4]) / 2
                               - ((h64[:2] + h64[2:4]) / 2 + h64[6] * 1e4 * h64[7:9])) ** 2).sum(1)))
        flips += wide != want
        v = DetectorVideo({"info": {"width": 1000, "height": 1000},
                           0: {"hand_dets": hd[None], "obj_dets": objs}}, "f.pkl", "v")
        box = v.crop(0, 1000, 1000, 0.8, 0.01, 1.0)
        union = np.concatenate([hd[None, :4], objs[want:want + 1, :4]]).astype(np.float64)
        assert box == pytest.approx((*np.clip(union[:, :2].min(0), 0, 1000),
                                     *np.clip(union[:, 2:].max(0), 0, 1000)))
    assert flips > 0  # float64 would have paired another object in these cases


def test_inputs_cannot_change_under_a_running_extraction(tmp_path):
    """`plan --inputs changed` while shards are being extracted from the old inputs is refused
    naming them; a shard whose split was planned again meanwhile is not committed."""
    import shutil
    from xmic.cache import Cache, ShardWriter
    from xmic.cache.claims import shard_claim
    from xmic.cache.paths import CacheError
    from xmic.extract.commits import same_inputs
    from xmic.extract.plan_record import ExtractPlan
    g = make_ego4d(tmp_path / "g", frames=240)
    shutil.copytree(g["root"], tmp_path / "moved")
    base = ["--dataset", "ego4d", "--annotations", g["annotations"], "--split", "val",
            "--taxonomy", g["taxonomy"], "--views", "full_frame", "--shard-size", "2"]
    cache = tmp_path / "c"
    run_xmic("extract", "plan", cache, *base, "--root", g["root"])
    run_xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
             "--device", "cpu", "--shards", "0")
    c = Cache.open(cache)
    info = ExtractPlan.load(c.root).splits["val"]
    check = same_inputs(c.root, "val", info)
    assert check() is None
    claim = shard_claim(c.root, "full_frame", "val-00001")  # a run of the old inputs, alive
    cp = run_xmic("extract", "plan", cache, *base, "--root", tmp_path / "moved", "--inputs",
                  "changed", check=False)
    assert cp.returncode == 2 and "is being extracted from its old inputs right now (1 shard(s) " \
                                  "running: val-00001 (host" in cp.stderr, cp.stderr
    claim.release()
    run_xmic("extract", "plan", cache, *base, "--root", tmp_path / "moved", "--inputs", "changed")
    assert "root changed" in check()  # the running writer's check now refuses its commit
    w = ShardWriter(c, "full_frame", "val-00001", 32, c.view("full_frame")["fingerprint"],
                    still_valid=check)
    for sid in w.segment_ids:
        w.fail(sid, "not encoded")
    with pytest.raises(CacheError, match=r"val-00001 of view full_frame is not committed: split "
                                         r"val was planned again from other inputs"):
        w.commit()
    assert "val-00001" not in c.committed("full_frame")


def test_detections_cost_what_a_real_video_costs(tmp_path):
    """A 100DOH pickle whose frames all share one record through the pickle's memo is held
    once, in float32; a box source keeps a few videos, not the split; a frame key beyond any
    video is one line."""
    import resource
    from xmic.extract.boxes.folder import VIDEOS_KEPT, load_video_detections
    rec = {"hand_dets": np.tile(np.array([[10, 10, 50, 50, 0.9, 3, 0.0, 0, 0, 1]], np.float64),
                                (2000, 1)),
           "obj_dets": np.tile(np.array([[60, 10, 90, 40, 0.5]], np.float64), (2000, 1))}
    data = {"info": {"width": 128, "height": 96}, **{f: rec for f in range(10_000)}}
    (tmp_path / "shared.pkl").write_bytes(pickle.dumps(data))
    assert (tmp_path / "shared.pkl").stat().st_size < 300_000
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    v = load_video_detections(tmp_path / "shared.pkl", "shared")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    assert grown_mb < 100, grown_mb  # 10,000 float64 copies were 2.4 GB
    hands, objects = v.frames[0]
    assert hands.dtype == np.float32 and v.frames[9999][0] is hands
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3 * VIDEOS_KEPT):
        (folder / f"v{i}.pkl").write_bytes(pickle.dumps(video({0: ([hand(10, 10, 100, 100)], None)})))
    src = open_boxes(folder)
    for i in range(3 * VIDEOS_KEPT):
        assert src.box(f"v{i}", "-", 0, W, H) is not None
    assert len(src._videos) == VIDEOS_KEPT
    (tmp_path / "far.pkl").write_bytes(pickle.dumps({"info": {"width": 1, "height": 1},
                                                     10**30: {"hand_dets": None}}))
    with pytest.raises(BoxError, match=r"far.pkl: frame 10{30}: a frame number above 2147483647"):
        load_video_detections(tmp_path / "far.pkl", "far")

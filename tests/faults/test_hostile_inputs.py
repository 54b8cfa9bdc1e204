"""Broken and hostile input through the real CLI: each gives a named error (file, row or
segment, reason) and leaves the other work done. Extraction-time faults share one world, so one
run shows that every bad segment fails alone; plan-time faults are refused before any work.
Elsewhere in the suite (same list, issue 8): truncated / undecodable mp4 (test_extract::
test_bad_videos), zero-byte JPEG, missing frame, NaN box (test_extract::
test_bad_inputs_fail_their_segments_only), code-running pickle and torch file
(test_cache_import), YAML unknown key and Python tag (test_config), index rows pointing outside
the cache (test_cache_verify), fingerprint mismatch (test_cache_roundtrip, test_evaluate)."""
from __future__ import annotations

import csv
import functools
import pickle
import shutil
from pathlib import Path

import pytest

from helpers import run_xmic
from extract_data import TINY, make_epic, write_mp4
from xmic.cache import Cache
from xmic.cache.verify import verify
from xmic.extract.boxes.epic100 import hoa_messages

pytestmark = pytest.mark.faults


xmic = functools.partial(run_xmic, check=False)


def set_box(pkl, index: int, **coords) -> None:
    with open(pkl, "rb") as f:
        msgs = pickle.load(f)
    m = hoa_messages()["Detections"]()
    m.ParseFromString(msgs[index])
    for k, v in coords.items():
        setattr(m.hands[0].bbox, k, v)
    msgs[index] = m.SerializeToString()
    with open(pkl, "wb") as f:
        pickle.dump(msgs, f)


def test_bad_segments_fail_alone(tmp_path):
    videos = ("P01_01", "P01_02", "P01_03", "P01_04", "P01_05")
    e = make_epic(tmp_path / "e", videos=videos, segs_per_video=4)  # segment _3 of each video
    frames = e["root"] / "P01" / "rgb_frames"                       # stops past frame 120: the end
    write_mp4(tmp_path / "clip.mp4", 5)
    shutil.copy(tmp_path / "clip.mp4", frames / "P01_01" / "frame_0000000020.jpg")  # an mp4 named .jpg
    set_box(e["boxes"] / "P01_02.pkl", 45, right=0.1)                # negative width (right < left)
    shutil.copy(e["boxes"] / "P01_04.pkl", e["boxes"] / "P01_03.pkl")  # another video's detections
    cache = tmp_path / "c"
    args = ["extract", "plan", cache, "--dataset", "epic", "--annotations", e["annotations"],
            "--root", e["root"], "--boxes", e["boxes"], "--shard-size", "4"]
    cp = xmic(*args)  # what a listing and the box files show is refused before any work
    assert cp.returncode == 2 and "5 video(s) with unusable frames" in cp.stderr, cp.stderr
    assert "segment P01_01_3 needs frames 106..135, but" in cp.stderr
    assert "P01_03.pkl: holds detections of video P01_04, not P01_03" in cp.stderr
    assert not cache.exists()
    assert xmic(*args, "--allow-missing").returncode == 0  # planned: recorded failed when run
    cp = xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
              "--device", "cpu", "--batch-size", "16")
    assert cp.returncode == 1, cp.stderr  # failures are reported, and the run still completes
    import re
    listed = re.search(r"more failure\(s\) \(all (\d+) in (\S+);", cp.stdout)
    assert listed, cp.stdout  # a few lines, the count, and a file with every failure
    assert len(Path(listed.group(2)).read_text().splitlines()) == int(listed.group(1))
    out = cp.stdout + Path(listed.group(2)).read_text()
    assert "frame_0000000020.jpg: frame 20 is not a readable image" in out, out
    assert "P01_02, segment P01_02_1, frame 46" in out and "negative size" in out, out
    assert "P01_03.pkl" in out and "P01_04" in out, out  # the pickle names the other video
    for v in videos:
        assert f"{v}_3" in out and "frame 121 is missing" in out  # stop past the end
    c = Cache.open(cache)
    assert verify(c, deep=True) == []
    rows = {r["segment_id"]: r for r in c.index().to_pylist()}
    failed = {s for s, r in rows.items() if r["status"] == "failed"}
    assert {"P01_01_0", "P01_02_1"} <= failed and {f"{v}_3" for v in videos} <= failed
    assert all(s.startswith("P01_03") for s in failed - {"P01_01_0", "P01_02_1"}
               - {f"{v}_3" for v in videos})
    ok = {s for s, r in rows.items() if r["status"] == "ok"}
    assert {"P01_04_0", "P01_04_1", "P01_05_2", "P01_01_1"} <= ok  # the rest is done
    assert all(r["full_frame__count"] == 0 for r in rows.values() if r["status"] == "failed")


def epic_rows(e) -> tuple[list[str], list[list[str]]]:
    with open(e["annotations"]) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_rows(path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


@pytest.mark.parametrize("fault, expect", [
    ("missing column", "missing column(s) ['stop_frame']"),
    ("duplicate segment id", "P01_01_1"),
    ("class id out of range", "row 3: noun id 7 out of range"),
    ("start after stop", "stops before it starts"),
])
def test_bad_annotations_refused_at_plan(tmp_path, fault, expect):
    e = make_epic(tmp_path / "e", videos=("P01_01",), segs_per_video=3)
    header, rows = epic_rows(e)
    if fault == "missing column":
        i = header.index("stop_frame")
        header = header[:i] + header[i + 1:]
        rows = [r[:i] + r[i + 1:] for r in rows]
    elif fault == "duplicate segment id":
        rows[2][0] = rows[1][0]
    elif fault == "class id out of range":
        rows[1][header.index("noun_class")] = "7"
    else:
        a = header.index("start_frame")
        rows[1][a], rows[1][a + 1] = rows[1][a + 1], rows[1][a]
        t = header.index("start_timestamp")
        rows[1][t], rows[1][t + 1] = rows[1][t + 1], rows[1][t]
    write_rows(e["annotations"], header, rows)
    cp = xmic("extract", "plan", tmp_path / "c", "--dataset", "epic", "--annotations",
              e["annotations"], "--root", e["root"], "--boxes", e["boxes"])
    assert cp.returncode == 2, cp.stdout + cp.stderr
    msg = cp.stderr.strip()
    assert msg.startswith("error: ") and len(msg.splitlines()) == 1, msg  # one line, no traceback
    assert str(e["annotations"]) in msg and expect in msg, msg
    assert not (tmp_path / "c" / "segments.parquet").exists()  # nothing planned


def test_ego4d_clip_with_the_wrong_extension(tmp_path):
    from extract_data import make_ego4d
    g = make_ego4d(tmp_path / "g", clips=("ok", "renamed"), frames=200)
    (g["root"] / "renamed.mp4").rename(g["root"] / "renamed.mkv")
    cache = tmp_path / "c"
    args = ["extract", "plan", cache, "--dataset", "ego4d", "--annotations", g["annotations"],
            "--taxonomy", g["taxonomy"], "--root", g["root"], "--split", "val", "--views",
            "full_frame"]
    cp = xmic(*args)
    assert cp.returncode == 2 and "renamed: video renamed: " in cp.stderr, cp.stderr
    assert xmic(*args, "--allow-missing").returncode == 0
    cp = xmic("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
              "--device", "cpu")
    assert cp.returncode == 1
    assert "video renamed: " in cp.stdout and "renamed.mp4 not found" in cp.stdout, cp.stdout
    ok = [r for r in Cache.open(cache).index().to_pylist() if r["status"] == "ok"]
    assert {r["video_id"] for r in ok} == {"ok"}

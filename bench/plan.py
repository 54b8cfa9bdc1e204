"""Planning benchmark: `extract plan` (with its coverage check) on real EPIC-100 annotations
against a generated media layout.

Reads an EPIC-100 annotation CSV (default: the validation split under ../shared/data, 9,668
segments over 138 videos), writes for every video an EPIC frame folder of empty JPEG names
``frame_0000000001.jpg`` .. its last annotated frame (the coverage check lists folders, never
decodes), and times ``plan`` for the full-frame view, then with a hand-box table of one box per
frame. Goal: under 10 s on 2 cores for the 9,668 segments.

usage: python bench/plan.py [--annotations CSV] [--videos N] [--json OUT]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from machine import cpu_name
from xmic.extract.planning import SplitSource, plan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "epic-kitchens-100-annotations"


def last_frames(annotations: Path, videos: int | None) -> tuple[dict, Path]:
    """Video -> its last annotated frame, and the annotation file cut to ``videos`` videos."""
    with open(annotations, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["video_id"] for r in rows})[:videos] if videos else None
    last: dict[str, int] = {}
    for r in rows:
        if keep is None or r["video_id"] in keep:
            last[r["video_id"]] = max(last.get(r["video_id"], 0), int(r["stop_frame"]))
    return last, keep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=Path, default=SHARED / "EPIC_100_validation.csv")
    ap.add_argument("--videos", type=int, default=None, help="only the first N videos")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xmic-bench-plan-"))
    try:
        last, keep = last_frames(args.annotations, args.videos)
        ann = args.annotations
        if keep is not None:  # a cut of the annotation file holding only those videos
            ann = work / ann.name
            with open(args.annotations, newline="") as f, open(ann, "w", newline="") as g:
                r = csv.reader(f)
                w = csv.writer(g)
                w.writerow(next(r))
                w.writerows(row for row in r if row[2] in keep)
            for side in ("EPIC_100_noun_classes.csv", "EPIC_100_verb_classes.csv",
                         "EPIC_100_video_info.csv"):  # the files read beside the annotations
                if (args.annotations.parent / side).exists():
                    shutil.copy(args.annotations.parent / side, work / side)
        t0 = time.perf_counter()
        box = {"video_id": [], "frame": [], "left": [], "top": [], "right": [], "bottom": []}
        for vid, n in last.items():
            d = work / "media" / vid.split("_")[0] / "rgb_frames" / vid
            d.mkdir(parents=True)
            for i in range(1, n + 1):
                os.close(os.open(d / f"frame_{i:010d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
            box["video_id"] += [vid] * n
            box["frame"] += list(range(1, n + 1))
        for k in ("left", "top", "right", "bottom"):
            box[k] = [1.0] * len(box["frame"])
        pq.write_table(pa.table(box), work / "boxes.parquet")
        made = time.perf_counter() - t0
        files = sum(last.values())
        out = {"benchmark": "plan", "annotations": str(args.annotations), "videos": len(last),
               "frame_files": files, "layout_seconds": round(made, 1), "machine":
               f"{cpu_name()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
               "goal_seconds": 10}
        for name, views, boxes in (("full_frame", ("full_frame",), None),
                                   ("with_box_table", ("full_frame", "hand_crop"),
                                    work / "boxes.parquet")):
            t0 = time.perf_counter()
            s = plan(work / f"c-{name}", SplitSource("epic", ann, work / "media", "validation",
                                                     boxes=boxes), views=views)
            sec = time.perf_counter() - t0
            out[name] = {"seconds": round(sec, 2), "segments": s["segments"],
                         "shards": s["shards"], "coverage": s["coverage"]}
            print(f"plan {name}: {s['segments']} segments, {len(last)} videos, {files} frame "
                  f"files: {sec:.2f} s (goal < 10 s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

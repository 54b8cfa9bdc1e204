"""Scale benchmark: how time and peak memory of each stage grow with the data, in one run.

For each size (a number of EPIC-100 videos: the first N of the real annotations (validation) under
../shared/data when present, synthetic videos otherwise), generates the media and inputs of
those videos, then measures every stage in a fresh process (its peak RSS is its own):
- ``plan-tars``: ``extract plan`` of full frames over per-video frame tars (member index built);
- ``plan-boxes``: the same with hand crops and a folder of EPIC-100 detection pickles (one
  ``Detections`` message per frame: the size of the released ones);
- ``run``: ``extract run`` of 8 segments per video with one DataLoader worker and the tiny model;
  the worker's peak RSS (the largest finished child of the process) and the run's;
- ``import``: ``cache import`` of X-MIC feature pickles (512-d float32, 32 frames per segment,
  every segment of the videos, two views);
- ``train``: one X-MIC epoch on a cache of every segment of the videos (512-d float16, 32
  frames, two views), CPU;
- ``table``: ``xmic grid table`` of a grid of four methods over one seed per two videos (a grid
  takes 100 seeds at most), each run scored on two targets (one real tiny run's scores copied
  to the others).
Videos are capped at ``--max-frames`` frames (segments past the cap are dropped) so that the
generated tars and pickles fit a laptop. Then, per stage, the growth exponent of time and of
peak RSS over size (the slope of log y on log size): ~1 is linear, ~0 flat. Memory is also
given as grown above the stage's baseline (the process after its imports, torch included), the
part that data can make grow. Goal: every memory exponent ~0 (bounded by the work in flight),
every time exponent ~1; training holds its features once (grown memory per feature byte ~1).

usage: python bench/scale.py [--sizes 8,16,32] [--stages plan-tars,...] [--json OUT]
       python bench/scale.py --stage NAME --world DIR   (one measurement; prints JSON)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name, status_mib

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "epic-kitchens-100-annotations"
STAGES = ("plan-tars", "plan-boxes", "run", "import", "train", "table")
TABLE_METHODS = ("zeroshot", "linear", "clip-adapter", "xmic")  # the table stage's grid rows
SEGMENTS_RUN = 8       # segments per video the run stage extracts
FEATURE_FRAMES = 32    # stored frames per segment (import, train)
DIM = 512


# ---- the world of one size ------------------------------------------------------------------
def annotation_rows(n_videos: int, max_frames: int, annotations: Path | None) -> tuple[list, list]:
    """(header, rows) of the first ``n_videos`` videos of the train annotations (or synthetic
    ones), segments ending past ``max_frames`` dropped."""
    if annotations is not None and annotations.exists():
        with open(annotations, newline="") as f:
            r = csv.reader(f)
            header = next(r)
            rows = list(r)
        vids = sorted({row[2] for row in rows})[:n_videos]
        keep = set(vids)
        rows = [row for row in rows if row[2] in keep and int(row[7]) <= max_frames]
        return header, rows
    from xmic.demo.epic_layout import annotation_row
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class",
              "noun", "noun_class", "all_nouns", "all_noun_classes"]
    rows = []
    for v in range(n_videos):
        vid = f"P{v // 10 + 1:02d}_{v % 10 + 1:02d}"
        for s in range(max_frames // 150):
            a = 1 + s * 150
            rows.append(annotation_row(f"{vid}_{s}", vid, a / 50, (a + 120) / 50, a, a + 120,
                                       "take", s % 5, "cup", s % 7))
    return header, rows


TINY_JPEG = None


def tiny_jpeg() -> bytes:
    global TINY_JPEG
    if TINY_JPEG is None:
        import io
        from PIL import Image
        buf = io.BytesIO()
        Image.new("RGB", (32, 24), (90, 120, 150)).save(buf, "JPEG")
        TINY_JPEG = buf.getvalue()
    return TINY_JPEG


def tar_header(name: str, size: int) -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def write_tar(path: Path, last: int, with_bytes: set) -> None:
    """A frame tar of members ``./frame_%010d.jpg`` 1..last: a real tiny JPEG for the frames in
    ``with_bytes``, empty members for the others (coverage reads headers only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tiny_jpeg()
    pad = b"\0" * (-len(data) % 512)
    with open(path, "wb") as f:
        for i in range(1, last + 1):
            name = f"./frame_{i:010d}.jpg"
            if i in with_bytes:
                f.write(tar_header(name, len(data)) + data + pad)
            else:
                f.write(tar_header(name, 0))
        f.write(b"\0" * 1024)


def write_detections(path: Path, vid: str, last: int) -> None:
    """EPIC-100's pickle of one video: one serialised ``Detections`` per frame, a hand touching
    an object."""
    from xmic.extract.boxes.epic100 import hoa_messages
    m = hoa_messages()["Detections"](video_id=vid, frame_number=1)
    h = m.hands.add(score=0.95, state=3, side=1)
    h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = 0.2, 0.3, 0.5, 0.7
    h.object_offset.x, h.object_offset.y = 0.1, 0.0
    o = m.objects.add(score=0.5)
    o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = 0.4, 0.3, 0.8, 0.8
    out = []
    for i in range(1, last + 1):
        m.frame_number = i
        out.append(m.SerializeToString())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f, protocol=4)


def make_world(root: Path, n_videos: int, max_frames: int, annotations: Path | None,
               run_segments: int = SEGMENTS_RUN, stages=()) -> dict:
    """The media and inputs of the videos; for ``import`` its X-MIC pickles and for ``train``
    its feature cache (made here, so that the measured process holds only what it reads)."""
    from xmic.cache.sampling import frames_to_store
    header, rows = annotation_rows(n_videos, max_frames, annotations)
    by_video: dict[str, list] = {}
    for row in rows:
        by_video.setdefault(row[2], []).append(row)
    run_rows = [r for vid in sorted(by_video) for r in by_video[vid][:run_segments]]
    for name, rs in (("train.csv", rows), ("run.csv", run_rows)):
        with open(root / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rs)
    for side in ("EPIC_100_noun_classes.csv", "EPIC_100_verb_classes.csv"):
        if annotations is not None and (annotations.parent / side).exists():
            shutil.copy(annotations.parent / side, root / side)
    if not (root / "EPIC_100_noun_classes.csv").exists():
        for side, name in (("noun", "cup"), ("verb", "take")):
            with open(root / f"EPIC_100_{side}_classes.csv", "w") as f:
                f.write("id,key,instances,category\n" + "".join(
                    f"{i},{name}{i},[],x\n" for i in range(400)))
    frames = 0
    media = not stages or any(s in stages for s in ("plan-tars", "plan-boxes", "run"))
    for vid, rs in by_video.items():
        last = max(int(r[7]) for r in rs) + 1
        frames += last
        if not media:
            continue
        sampled = {f for r in by_video[vid][:run_segments]
                   for f in frames_to_store("segment", int(r[6]), int(r[7]))}
        write_tar(root / "media" / vid.split("_")[0] / "rgb_frames" / f"{vid}.tar", last, sampled)
        write_detections(root / "detections" / f"{vid}.pkl", vid, last)
    if "import" in stages or "train" in stages:
        import numpy as np
        rng = np.random.default_rng(0)
    if "import" in stages:
        for view in ("hand_crop", "full_frame"):
            with open(root / f"{view}.pkl", "wb") as f:
                pickle.dump({r[0]: rng.standard_normal((FEATURE_FRAMES, DIM), dtype=np.float32)
                             for r in rows}, f, protocol=4)
    if "train" in stages:
        from grid import make_cache
        make_cache(root / "features", "epic", ("train",), len(rows), FEATURE_FRAMES,
                   [f"c{i}" for i in range(20)], 0)
    if "table" in stages:
        make_table_grid(root / "grid", min(100, -(-n_videos // 2)))
    return {"videos": len(by_video), "segments": len(rows), "frames": frames,
            "run_segments": len(run_rows)}


def make_table_grid(root: Path, seeds: int) -> None:
    """A finished grid of ``TABLE_METHODS`` over ``seeds`` seeds: one seed trained and scored for
    real (tiny caches, 1 epoch), its scores copied to the others' runs."""
    import yaml
    from click.testing import CliRunner
    from grid import make_cache
    from xmic.cli import main as cli
    from xmic.files.atomic import write_json_atomic
    from xmic.grid.layout import FINISHED
    from xmic.grid.plan import load_grid
    from xmic.grid.state import eval_dir
    root.mkdir(parents=True)
    src = make_cache(root / "epic", "epic", ("train", "validation"), 60, 4,
                     ["knife", "pan", "cup", "board"], 0)
    tgt = make_cache(root / "ego4d", "ego4d", ("val",), 30, 4, ["knife", "cup", "door"], 1)
    for name, n in (("one", 1), ("all", seeds)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({
            "caches": {"epic": str(src), "ego4d": str(tgt)}, "sources": {"epic": "train"},
            "targets": {"epic": "validation", "ego4d": "val"}, "labels": ["noun"],
            "methods": {m: {} for m in TABLE_METHODS}, "seeds": list(range(n)),
            "train": {"epochs": 1, "device": "cpu", "batch_size": 16}}))
        r = CliRunner().invoke(cli, ["grid", "plan", str(root / name), "--recipe",
                                     str(root / f"{name}.yaml")])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["grid", "run", str(root / "one")])
    assert r.exit_code == 0, r.output
    one = load_grid(root / "one")
    scores = {(run["method"], t["dataset"]): json.loads(
        (eval_dir(root / "one" / run["dir"], t) / "metrics.json").read_text())
        for run in one["runs"] for t in run["targets"]}
    grid = load_grid(root / "all")
    for run in grid["runs"]:
        d = root / "all" / run["dir"]
        for t in run["targets"]:
            write_json_atomic(eval_dir(d, t) / "metrics.json",
                              {**scores[(run["method"], t["dataset"])], "seed": run["seed"]}, d)
        write_json_atomic(d / FINISHED, {"seconds": 1.0}, d)


# ---- one measurement, in its own process ----------------------------------------------------
def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: its own address space's, unlike ru_maxrss,
    which Linux carries over from the parent's at exec)."""
    return status_mib("VmHWM")


def children_peak_mb() -> float:
    """The largest peak of this process's finished children (its DataLoader workers)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """This process's resident memory now (its baseline before a stage's work)."""
    return status_mib("VmRSS")


def measure(stage: str, world: Path) -> dict:
    from xmic.cache import CacheConfig
    from xmic.extract.planning import PlanPolicy, SplitSource, plan
    work = world / f"out-{stage}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    allow = PlanPolicy(allow_low_coverage=True)
    import torch  # noqa: F401  (every stage's baseline holds it, as the CLI's does)
    base = rss_mb()
    t0 = time.perf_counter()
    out: dict = {}
    if stage == "plan-tars":
        plan(work / "c", SplitSource("epic", world / "train.csv", world / "media"),
             views=("full_frame",), policy=allow)
    elif stage == "plan-boxes":
        plan(work / "c", SplitSource("epic", world / "train.csv", world / "media",
                                     boxes=world / "detections"), policy=allow)
    elif stage == "run":
        from xmic.extract.config import ExtractConfig
        from xmic.extract.pipeline import run_shards
        from xmic.towers.encoders import TINY_CONFIG
        plan(work / "c", SplitSource("epic", world / "run.csv", world / "media",
                                     boxes=world / "detections"),
             cache_config=CacheConfig(shard_segments=64), policy=allow)
        t0 = time.perf_counter()
        s = run_shards(work / "c", ExtractConfig(model=str(TINY_CONFIG), weights="random",
                                                 device="cpu", workers=1, batch_size=64),
                       echo=lambda *a: None)
        out.update(frames=s.frames, failed=s.segments_failed,
                   worker_peak_mb=children_peak_mb())
    elif stage == "import":
        from xmic.cache.xmic_import import import_pickles, imported_model
        pickles = {view: world / f"{view}.pkl" for view in ("hand_crop", "full_frame")}
        out["pickle_mb"] = round(sum(p.stat().st_size for p in pickles.values()) / 2**20, 1)
        t0 = time.perf_counter()
        import_pickles(work / "c", "epic", "train", world / "train.csv", pickles, None,
                       imported_model("ViT-B-16-quickgelu", "bench", True))
    elif stage == "train":
        from xmic.config import from_dict
        from xmic.train.config import TrainConfig
        from xmic.train.loop import train
        n = sum(1 for _ in open(world / "train.csv")) - 1
        out["feature_mb"] = round(2 * n * FEATURE_FRAMES * DIM * 2 / 2**20, 1)  # float16
        t0 = time.perf_counter()
        train(world / "features", from_dict(TrainConfig, {"epochs": 1, "device": "cpu", "heldout_fraction": 0.0,
                                             "label": "noun"}), work / "run", echo=lambda *a: None)
    elif stage == "table":
        from click.testing import CliRunner
        from xmic.cli import main as cli
        out["runs"] = len(json.loads((world / "grid" / "all" / "grid.json").read_text())["runs"])
        t0 = time.perf_counter()
        r = CliRunner().invoke(cli, ["grid", "table", str(world / "grid" / "all"), "--out",
                                     str(work / "table.md")])
        if r.exit_code != 0 or "missing" in r.output.split("(table:")[0]:
            raise SystemExit(f"grid table failed: {r.output[-2000:]}")
    else:
        raise SystemExit(f"unknown stage {stage}")
    peak = peak_mb()
    out.update(stage=stage, seconds=round(time.perf_counter() - t0, 2), peak_mb=peak,
               grown_mb=round(peak - base, 1))
    if "feature_mb" in out:  # the trainer's budget: memory grown per feature byte held
        out["grown_per_feature_byte"] = round(out["grown_mb"] / out["feature_mb"], 2)
    return out


# ---- the driver -------------------------------------------------------------------------------
def exponent(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 2) if den else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32", help="videos per size")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--max-frames", type=int, default=12000)
    ap.add_argument("--annotations", type=Path, default=SHARED / "EPIC_100_validation.csv")
    ap.add_argument("--synthetic", action="store_true", help="ignore the real annotations")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--world", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.stage:  # one measurement (a child of the driver)
        print(json.dumps(measure(args.stage, args.world)))
        return None
    sizes = [int(s) for s in args.sizes.split(",")]
    stages = args.stages.split(",")
    ann = None if args.synthetic or not args.annotations.exists() else args.annotations
    work = Path(tempfile.mkdtemp(prefix="xmic-bench-scale-"))
    res = {"benchmark": "scale", "annotations": str(ann) if ann else "synthetic",
           "max_frames": args.max_frames, "sizes": [], "exponents": {},
           "machine": f"{cpu_name()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    try:
        for n in sizes:
            world = work / f"v{n}"
            world.mkdir()
            t0 = time.perf_counter()
            row = {"videos": n, **make_world(world, n, args.max_frames, ann, stages=stages),
                   "generate_seconds": 0.0}
            row["generate_seconds"] = round(time.perf_counter() - t0, 1)
            for stage in stages:
                env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
                       "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent),
                                                      os.environ.get("PYTHONPATH", "")])}
                cp = subprocess.run([sys.executable, __file__, "--stage", stage, "--world",
                                     str(world)], capture_output=True, text=True, env=env)
                if cp.returncode:
                    raise SystemExit(f"stage {stage} at {n} videos failed:\n{cp.stderr[-3000:]}")
                row[stage] = json.loads(cp.stdout.strip().splitlines()[-1])
                print(f"{n} videos: {stage}: {row[stage]}", flush=True)
            shutil.rmtree(world, ignore_errors=True)
            res["sizes"].append(row)
        xs = [r["frames"] for r in res["sizes"]]
        for stage in stages:
            got = [r[stage] for r in res["sizes"]]
            e = {"seconds": exponent(xs, [g["seconds"] for g in got]),
                 "peak_mb": exponent(xs, [g["peak_mb"] for g in got]),
                 "grown_mb": exponent(xs, [g["grown_mb"] for g in got])}
            if "worker_peak_mb" in got[0]:
                e["worker_peak_mb"] = exponent(xs, [g["worker_peak_mb"] for g in got])
            data = next((k for k in ("feature_mb", "pickle_mb") if k in got[0]), None)
            if data and got[-1][data] > got[0][data]:  # memory added per byte of data added
                e[f"grown_per_{data}"] = round((got[-1]["grown_mb"] - got[0]["grown_mb"])
                                               / (got[-1][data] - got[0][data]), 2)
            res["exponents"][stage] = e
            print(f"{stage}: growth exponents over frames {e}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

"""Planning and status at cluster scale, on generated indexes (no model, no cluster).

- plan: an EPIC-100-layout annotation CSV of ``--segments`` rows (1,000 videos; class lists and
  video info beside it) -> ``xmic.extract.planning.plan`` into a new cache (goal: 100,000
  segments in < 30 s on this machine). Seconds, from reading the CSV to the written plan.
- extract_startup: ``extract run``'s work list before its first shard, 100,000 segments in
  10,000 shards (linear in shards and rows; it was quadratic, about 10^9 steps at this size).
- status: a cache whose plan has ``--shards`` shards and 2 views, with the layout a real run
  leaves (about 70% committed shards with markers and commit-log lines, 10% failed, 1%
  committed with failed segments, 5% running claims, the rest pending) ->
  ``xmic.slurm.status.status`` + ``format_status`` (goal: 10,000 shards in < 5 s), with a cold
  and a warm page cache figure where /proc/sys/vm/drop_caches is writable.

usage: python bench/slurm_scale.py [--segments 100000] [--shards 10000] [--json OUT]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from machine import cpu_name, drop_page_cache

from xmic.cache import Cache, CacheConfig
from xmic.cache.index import make_plan, rows_table
from xmic.files.atomic import write_json_atomic
from xmic.cache.paths import MARKER, PROGRESS, ROWS, shard_dir, view_dir
from xmic.extract.planning import PlanPolicy, SplitSource, plan
from xmic.slurm.status import format_status, status

VIEWS = ("full_frame", "hand_crop")


def write_epic_csv(folder: Path, n: int, videos: int = 1000) -> Path:
    folder.mkdir(parents=True)
    per = -(-n // videos)
    with open(folder / "EPIC_100_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["narration_id", "participant_id", "video_id", "narration_timestamp",
                    "start_timestamp", "stop_timestamp", "start_frame", "stop_frame", "narration",
                    "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"])
        for i in range(n):
            v, s = divmod(i, per)
            vid = f"P{v // 40 + 1:02d}_{v % 40 + 1:03d}"
            a = 1 + s * 120
            ts = lambda fr: f"00:{fr // 50 // 60:02d}:{fr / 50 % 60:05.2f}"  # noqa: E731
            w.writerow([f"{vid}_{s}", vid.split("_")[0], vid, ts(a), ts(a), ts(a + 100), a, a + 100,
                        "take knife", "take", i % 97, "knife", i % 300, "['knife']", f"[{i % 300}]"])
    for kind, k in (("noun", 300), ("verb", 97)):
        with open(folder / f"EPIC_100_{kind}_classes.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "key", "instances", "category"])
            w.writerows([[i, f"{kind}{i}", "[]", "x"] for i in range(k)])
    with open(folder / "EPIC_100_video_info.csv", "w") as f:
        f.write("video_id,duration,fps,resolution\n")
        for v in range(videos):
            f.write(f"P{v // 40 + 1:02d}_{v % 40 + 1:03d},600.0,50.0,456x256\n")
    return folder / "EPIC_100_train.csv"


def bench_plan(tmp: Path, n: int) -> dict:
    csv_path = write_epic_csv(tmp / "ann", n)
    t = time.perf_counter()
    out = plan(tmp / "plan_cache", SplitSource("epic", csv_path, tmp / "media", "train"),
               views=("full_frame",), cache_config=CacheConfig(shard_segments=256),
               policy=PlanPolicy(allow_missing=True))
    return {"segments": out["segments"], "shards": out["shards"],
            "seconds": round(time.perf_counter() - t, 2)}


def fake_marker(view: str, shard: str, segs: int, failed: int, rng: random.Random) -> dict:
    secs = round(rng.uniform(20, 40), 3)
    return {"format": "xmic-shard", "version": 1, "view": view, "shard": shard, "rows": segs * 32,
            "segments": segs, "ok": segs - failed, "failed": failed, "dim": 512,
            "fingerprint": {"model": {"name": "ViT-B-16-quickgelu", "weights_sha256": "0" * 64}},
            "config": {"producer": {"model": "ViT-B-16-quickgelu", "batch_size": 256}},
            "stats": {"attempt": 1, "seconds": secs, "frames": segs * 32,
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                time.gmtime(1.79e9 + rng.uniform(0, 36000)))}}


def build_status_cache(root: Path, shards: int, per_shard: int = 8) -> Cache:
    cache = Cache.create(root, "epic", CacheConfig(shard_segments=per_shard))
    n = shards * per_shard
    cols = dict(segment_id=[f"v{i // 1000}_{i}" for i in range(n)], dataset=["epic"] * n,
                split=["train"] * n, video_id=[f"v{i // 1000}" for i in range(n)],
                start_frame=list(range(n)), stop_frame=[i + 10 for i in range(n)],
                start_sec=[0.0] * n, stop_sec=[1.0] * n, fps=[50.0] * n, verb_id=[0] * n,
                verb=["take"] * n, noun_id=[0] * n, noun=["knife"] * n)
    cache.add_plan(make_plan(cols, per_shard, "train"))
    from xmic.extract.plan_record import ExtractPlan, SplitPlan
    ExtractPlan({"train": SplitPlan("epic", "", str(root), tuple(VIEWS))}).save(root)
    rng = random.Random(0)
    names = cache.shards()
    for v in VIEWS:
        vd = view_dir(root, v)
        (vd / ".running").mkdir(parents=True)
        (vd / ".attempts").mkdir()
        write_json_atomic(vd / "view.json", {"dim": 512, "fingerprint": {}})
    for i, shard in enumerate(names):
        r = rng.random()
        for v in VIEWS:
            vd = view_dir(root, v)
            (vd / ".attempts" / f"{shard}.log").write_text("2026-11-28T00:00:00Z node1 1\n")
            if r < 0.71:
                d = shard_dir(root, v, shard)
                d.mkdir()
                failed = 1 if r < 0.01 else 0
                m = fake_marker(v, shard, per_shard, failed, rng)
                (d / MARKER).write_text(json.dumps(m))
                with open(vd / PROGRESS, "a") as f:  # the commit log a real writer appends to
                    f.write(json.dumps({"shard": shard, "rows": m["rows"], "failed": failed,
                                        **{k: m["stats"][k] for k in ("attempt", "seconds",
                                                                      "finished")}}) + "\n")
                if failed:
                    ids = [f"s{k}" for k in range(per_shard)]
                    pq.write_table(rows_table(ids, [0] * per_shard, [32] * per_shard,
                                              [[]] * per_shard, ["failed"] + ["ok"] * (per_shard - 1),
                                              ["decode error"] + [None] * (per_shard - 1)), d / ROWS)
            elif r < 0.81:
                (vd / f"{shard}.failed.json").write_text(json.dumps(
                    {"error": "RuntimeError: CUDA out of memory", "attempt": 2}))
            elif r < 0.86:
                (vd / ".running" / f"{shard}.node7.4242.abcd1234").write_text(
                    json.dumps({"job": f"99_{i}", "host": "node7"}))
    return cache



def bench_startup(tmp: Path, n: int, shard_segments: int = 10) -> dict:
    """``extract run``'s start-up before its first shard: the plan's rows grouped by shard and
    the work list of every shard (one state listing per view), for ``n`` segments in shards of
    ``shard_segments`` (10: 10,000 shards at 100,000 segments, the worst case of a cluster)."""
    from xmic.extract.pipeline import shard_work
    csv_path = write_epic_csv(tmp / "ann_startup", n)
    root = tmp / "startup_cache"
    plan(root, SplitSource("epic", csv_path, tmp / "media", "train"), views=("full_frame",),
         cache_config=CacheConfig(shard_segments=shard_segments),
         policy=PlanPolicy(allow_missing=True))
    cache = Cache.open(root)
    t = time.perf_counter()
    by_shard: dict = {}
    for r in cache.plan().to_pylist():
        by_shard.setdefault(r["shard"], []).append(r)
    work, done, _, _ = shard_work(cache, "train", ["full_frame"], {}, cache.shards(), by_shard)
    return {"segments": n, "shards": len(cache.shards()), "to_do": len(work),
            "seconds": round(time.perf_counter() - t, 2)}


def bench_status(tmp: Path, shards: int) -> dict:
    root = tmp / "status_cache"
    t = time.perf_counter()
    build_status_cache(root, shards)
    built = time.perf_counter() - t
    out = {"shards": shards, "views": len(VIEWS), "build_s": round(built, 1)}
    for mode in ("cold", "warm"):
        if mode == "cold" and not drop_page_cache():
            continue
        t = time.perf_counter()
        cache, report, summary, subs = status(root)
        text = format_status(cache, summary, subs)
        out[f"{mode}_seconds"] = round(time.perf_counter() - t, 2)
        out["summary"] = {k: summary[k] for k in ("done", "running", "failed", "pending")}
        out["lines"] = len(text.splitlines())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=10_000)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="xmic-bench-slurm-"))
    try:
        res = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}",
               "date": time.strftime("%Y-%m-%d"), "plan": bench_plan(tmp, a.segments),
               "extract_startup": bench_startup(tmp, a.segments),
               "status": bench_status(tmp, a.shards), "pyarrow": pa.__version__}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["plan"]["goal_s"], res["status"]["goal_s"] = 30, 5
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""Grid benchmark: ``xmic grid run --executor inprocess`` against the same runs called bare.

Builds two caches (an EPIC-like source with train/validation and an Ego4D-like target) of
``--segments`` segments, ``--frames`` frames each, D=512, through the real cache writer; plans a
grid (X-MIC and zero-shot, ``--seeds`` seeds, ``--epochs`` epochs, scored on both targets), then
in one run measures (a) the grid's wall time and (b) the sum of the same runs' bare ``train`` +
``evaluate_run`` calls, each loading its caches itself. Reports the ratio (goal <= 1.05) and the
cache-load time the grid saves by loading each cache once.

It also trains ``--stack`` X-MIC seeds as one stacked model (``xmic.train.stacked``) against
the same seeds one by one, and reports runs/hour of both (training only).

usage: python bench/grid.py [--segments 2000] [--frames 32] [--seeds 2] [--epochs 3] [--stack 4]
                            [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from machine import cpu_name
from xmic.cache import Cache, CacheConfig, ShardWriter
from xmic.cache import fingerprint as F
from xmic.cache.index import make_plan
from xmic.cache.vocab import add_vocab
from xmic.config import from_dict
from xmic.evaluate.run import evaluate_run
from xmic.grid.plan import load_grid, plan_grid
from xmic.grid.recipe import load_recipe
from xmic.grid.runner import run_inprocess
from xmic.grid.state import eval_dir
from xmic.train.config import TrainConfig
from xmic.train.data import load_bank
from xmic.train.loop import train

DIM = 512


def make_cache(root: Path, dataset: str, splits, n: int, frames: int, names, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    model = F.model_identity("ViT-B-16-quickgelu", "bench", "bench", "bench", True)
    cache = Cache.create(root, dataset, CacheConfig(shard_segments=256))
    protos = rng.standard_normal((len(names), DIM)).astype(np.float32)
    for split in splits:
        labels = rng.integers(0, len(names), n)
        cols = dict(segment_id=[f"{split}_{i}" for i in range(n)], dataset=[dataset] * n,
                    split=[split] * n, video_id=[f"{split}{i % 50:03d}" for i in range(n)],
                    start_frame=[0] * n, stop_frame=[frames - 1] * n, start_sec=[0.0] * n,
                    stop_sec=[1.0] * n, fps=[float(frames)] * n, verb_id=[0] * n, verb=["v"] * n,
                    noun_id=[int(x) for x in labels], noun=[names[int(x)] for x in labels])
        cache.add_plan(make_plan(cols, 256, split))
        by_id = dict(zip(cols["segment_id"], labels))
        for view in ("hand_crop", "full_frame"):
            fp = F.view_fingerprint(model, "fp16", F.clip_preprocess(),
                                    F.hand_crop_rule() if view == "hand_crop" else None,
                                    {"policy": "all"})
            for shard in cache.shards(split):
                with ShardWriter(cache, view, shard, DIM, fp) as w:
                    for sid in w.segment_ids:
                        x = protos[by_id[sid]] + rng.standard_normal((frames, DIM)).astype(np.float32)
                        w.add(sid, x, range(frames))
                    w.commit()
    for name, prompt in (("noun", "{}"), ("noun.photo", "a photo of a {}")):
        add_vocab(cache, name, list(names), protos, prompt, F.vocab_fingerprint(model, "fp16", prompt))
    return cache.root


def bare(grid: dict, work: Path) -> float:
    """The grid's runs as separate train + evaluate calls, each loading its own caches."""
    t0 = time.perf_counter()
    for r in grid["runs"]:
        d = work / r["id"]
        train(r["cache"], from_dict(TrainConfig, r["config"]), d, echo=lambda *a, **k: None)
        for t in r["targets"]:
            evaluate_run(d, t["cache"], t["split"], None, eval_dir(d, t), device=DEVICE[0])
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--stack", type=int, default=4, help="X-MIC seeds trained stacked")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    DEVICE[0] = args.device
    work = Path(tempfile.mkdtemp(prefix="xmic-bench-grid-"))
    try:
        src = make_cache(work / "epic", "epic", ("train", "validation"), args.segments,
                         args.frames, ["knife", "pan", "cup", "board", "tap", "lid"], 0)
        tgt = make_cache(work / "ego4d", "ego4d", ("val",), args.segments // 2, args.frames,
                         ["knife", "cup", "door", "phone"], 1)
        recipe = work / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "caches": {"epic": str(src), "ego4d": str(tgt)}, "sources": {"epic": "train"},
            "targets": {"epic": "validation", "ego4d": "val"}, "labels": ["noun"],
            "methods": {"xmic": {}, "zeroshot": {}}, "seeds": list(range(args.seeds)),
            "train": {"epochs": args.epochs, "device": args.device}}))
        plan_grid(work / "grid", load_recipe(str(recipe)))
        grid = load_grid(work / "grid")
        bare({"runs": grid["runs"][:1]}, work / "warm-up")  # imports, plotting, page cache
        t0 = time.perf_counter()
        out = run_inprocess(work / "grid", echo=lambda *a: None)
        grid_s = time.perf_counter() - t0
        bare_s = bare(grid, work / "bare")
        stacked = stacked_vs_single(src, args, work / "stacked")
        t = time.perf_counter()  # what one load of each (cache, split) costs, for the record
        c = Cache.open(src)
        load_bank(c, "train", ["hand_crop", "full_frame"], "noun", 6, "cpu")
        one_load = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = {"benchmark": "grid", "device": args.device, "machine": f"{platform.node()} {os.cpu_count()} cores",
           "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "runs": len(grid["runs"]),
           "segments": args.segments, "frames": args.frames, "epochs": args.epochs,
           "grid_seconds": round(grid_s, 2), "bare_seconds": round(bare_s, 2),
           "ratio_grid_vs_bare": round(grid_s / bare_s, 3), "goal_ratio": "<= 1.05",
           "grid_load_seconds": out["load_seconds"], "loads_saved": out["loads_saved"],
           "one_train_split_load_seconds": round(one_load, 3),
           "seconds_per_run": round(grid_s / len(grid["runs"]), 2), "stacked": stacked}
    print(f"grid of {res['runs']} runs: {grid_s:.1f}s in process vs {bare_s:.1f}s as bare calls "
          f"(ratio {res['ratio_grid_vs_bare']}, goal <= 1.05); caches loaded in "
          f"{out['load_seconds']:.1f}s, {out['loads_saved']} loads saved "
          f"(one train-split load {one_load:.2f}s)", flush=True)
    print(f"{stacked['members']} X-MIC seeds stacked: {stacked['stacked_runs_per_hour']:.0f} "
          f"runs/hour vs {stacked['single_runs_per_hour']:.0f} one by one (x"
          f"{stacked['speedup']}; training only, one bank in memory)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


DEVICE = ["cpu"]  # where the bare evaluate calls run (--device)


def stacked_vs_single(cache: Path, args, work: Path) -> dict:
    """X-MIC's ``--stack`` seeds trained as one stacked model (``fit`` with several seeds) against the
    same seeds trained one by one (bare ``train`` calls), both on a bank loaded once
    beforehand and writing their run folders: runs/hour."""
    import torch
    from xmic.train.loop import fit
    seeds = list(range(max(2, args.stack)))
    cfgs = [from_dict(TrainConfig, {"method": "xmic", "epochs": args.epochs, "device": args.device,
                                    "seed": s, "split": "train", "label": "noun"})
            for s in seeds]
    from xmic.grid.runner import BankMemo
    memo = BankMemo()  # the bank loaded once, as a grid in one process loads it
    quiet = lambda *a, **k: None  # noqa: E731
    fit(cache, cfgs[:2], [work / "warm-0", work / "warm-1"], echo=quiet,
                  bank_loader=memo)  # warm-up: the bank, vmap's first trace
    t0 = time.perf_counter()
    fit(cache, cfgs, [work / f"stacked{c.seed}" for c in cfgs], echo=quiet,
                  bank_loader=memo)
    stacked_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in cfgs:
        train(cache, c, work / f"seed{c.seed}", echo=quiet, bank_loader=memo)
    single_s = time.perf_counter() - t0
    return {"members": len(cfgs), "epochs": args.epochs, "threads": torch.get_num_threads(),
            "stacked_seconds": round(stacked_s, 2), "single_seconds": round(single_s, 2),
            "stacked_runs_per_hour": round(3600 * len(cfgs) / stacked_s, 1),
            "single_runs_per_hour": round(3600 * len(cfgs) / single_s, 1),
            "speedup": round(single_s / stacked_s, 3)}


if __name__ == "__main__":
    main()

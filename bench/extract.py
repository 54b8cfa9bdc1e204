"""Extraction benchmark: end-to-end frames/s against the bound its two stages set.

Generates EPIC-layout JPEG folders (with detection pickles), the same frames packed as EPIC's
per-video tars, and Ego4D-layout mp4 clips, plans them, and runs the real pipeline (decode,
crop and resize in DataLoader workers, pack, encode, write) for ``--model`` with random
weights. In the same run it measures each stage alone: the bare encoder on pre-built uint8
batches of the same number of frames, and decoding only (the same DataLoader, workers,
sampling and crops, nothing encoded), with each worker's peak resident memory. On a CPU both
stages share the cores, so the bound is their work one after the other (the serial bound,
1 / (1/decode + 1/encode)); with a GPU the encoder runs beside the decoding CPUs and the bound
is the slower stage. The ratio against the bound (goal >= 0.9) says how much the pipeline
loses to its own orchestration. All rates count frames through the encoder (frames x views).
Each layout runs ``--rounds`` rounds, each the pipeline on a fresh cache then both stages alone,
back to back; the round of median ratio is reported with the range, so that load from another
process on a shared machine moves one round rather than the figure.

usage: python bench/extract.py [--model tiny|ViT-B-16-quickgelu] [--videos 4] [--frames 300]
                               [--workers 2] [--batch-size 64] [--device cpu|cuda]
                               [--precision fp32|fp16] [--shard-size 64] [--decode cpu|gpu]
                               [--layouts jpeg,tar,mp4] [--rounds 3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from machine import cpu_name, status_mib
from report import spread
from xmic.cache import CacheConfig
from xmic.extract.config import ExtractConfig
from xmic.extract.device_decode import DeviceDecoder
from xmic.towers.encoders import load_encoder
from xmic.extract.pipeline import run_shards
from xmic.extract.planning import SplitSource, plan
from xmic.demo.world import make_world
from xmic.towers.encoders import TINY_CONFIG

TINY = TINY_CONFIG


def bare_fps(enc, frames: int, batch: int, size: int) -> float:
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)  # as workers hand over
    if enc.device.type == "cuda":
        x = x.pin_memory()
    enc.encode_images(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < frames:
        enc.encode_images(x).cpu()
        n += batch
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def decode_fps(cache_dir: Path, cfg: ExtractConfig, enc) -> tuple[float, int]:
    """Frames/s (x views) of decoding, cropping and preprocessing alone, as extraction does them."""
    from torch.utils.data import DataLoader

    from xmic.cache import Cache
    from xmic.extract.plan_record import ExtractPlan
    from xmic.extract.segment_reader import SegmentFrames
    cache = Cache.open(cache_dir)
    meta = ExtractPlan.load(cache.root)
    n, t0, peak = 0, time.perf_counter(), 0
    for split, info in meta.splits.items():
        rows = [r for r in cache.plan().to_pylist() if r["split"] == split]
        loader = DataLoader(SegmentFrames(rows, info, enc.pixels, cfg),
                            batch_size=None, num_workers=cfg.workers)
        items = iter(loader)
        decoder = DeviceDecoder(enc.pixels, enc.device) if cfg.decode == "gpu" else None
        for i, (_, frames, tensors, err, _fell) in enumerate(items):
            if decoder is not None and not err:
                tensors = decoder(tensors)  # decoded and resized on the GPU, as extraction does
            n += 0 if err else sum(len(t) for t in tensors.values())
            if i % 8 == 0 or i == len(rows) - 1:  # before the last item the workers still live
                peak = max([peak] + [peak_rss_mib(w.pid) for w in getattr(items, "_workers", [])])
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0), n, peak


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory (VmHWM), MiB; pages shared with the parent count."""
    return status_mib("VmHWM", pid)


def measure_round(work: Path, layout: str, r: int, cfg: ExtractConfig, enc, views: int, args,
                  size: int, replan) -> dict:
    """One round, back to back on the same machine state: the pipeline end to end on a fresh
    cache, then the bare encoder and decoding alone over the same frames; their ratio."""
    cache_dir = work / f"c-{layout}-{r}"
    replan(cache_dir)
    t0 = time.perf_counter()
    s = run_shards(cache_dir, cfg, encoder=enc, echo=lambda *a: None)
    wall = time.perf_counter() - t0
    encoded = s["frames"] * views  # frames through the encoder, all views
    e2e = encoded / wall
    bare = bare_fps(enc, encoded, args.batch_size, size)
    decode, decoded, peak = decode_fps(cache_dir, cfg, enc)
    assert decoded == encoded, (decoded, encoded)  # the same frames, the same crops
    shutil.rmtree(cache_dir, ignore_errors=True)
    slower = min(bare, decode)
    serial = 1 / (1 / bare + 1 / decode)
    # the CPU's stages share its cores: the bound is both stages' work one after the other;
    # a GPU encodes while the CPU decodes: the bound is the slower stage
    bound, bound_name = (slower, "slower stage") if args.device == "cuda" else (serial, "serial bound")
    return {"frames": encoded, "end_to_end_fps": round(e2e, 1), "bare_encoder_fps": round(bare, 1),
            "decode_only_fps": round(decode, 1), "serial_bound_fps": round(serial, 1),
            "bound": bound_name, "bound_fps": round(bound, 1),
            "slower_stage": "decode" if decode < bare else "encoder",
            "ratio": round(e2e / bound, 3), "ratio_to_slower_stage": round(e2e / slower, 3),
            "peak_rss_per_worker_mib": round(peak, 1), "seconds": round(wall, 2),
            "failed": s["segments_failed"]}


def tar_layout(src: Path, dst: Path) -> Path:
    """A copy of an EPIC layout whose frame folders are packed as EPIC ships them (one tar
    per video, members ./frame_*.jpg): the same JPEG bytes, read from the archives."""
    from xmic.demo.epic_layout import pack_frames
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.csv", "detections"))
    for folder in sorted(dst.glob("*/rgb_frames/*")):
        if folder.is_dir():
            pack_frames(folder)
    return dst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300, help="frames per generated video")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--layouts", default="jpeg,tar,mp4",
                    help="jpeg: EPIC frame folders; tar: the same frames as EPIC's per-video "
                         "tars, read in place; mp4: Ego4D clips")
    ap.add_argument("--shard-size", type=int, default=64, help="segments per shard")
    ap.add_argument("--decode", default="cpu", choices=["cpu", "gpu"],
                    help="gpu: JPEG layouts decoded and resized on the CUDA device")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of (end to end, bare encoder, decode only), each back to back; "
                         "the round of median ratio is reported, with the spread")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    model = str(TINY) if args.model == "tiny" else args.model
    enc = load_encoder(model, "random", args.device, args.precision, 0)
    size = enc.preprocess["size"]
    cfg = ExtractConfig(model=model, weights="random", workers=args.workers,
                        batch_size=args.batch_size, device=args.device, precision=args.precision,
                        sampling="all", decode=args.decode)
    work = Path(tempfile.mkdtemp(prefix="xmic-bench-extract-"))
    results = {"benchmark": "extract", "model": args.model, "device": args.device,
               "card": torch.cuda.get_device_name() if args.device == "cuda" else cpu_name(),
               "machine": f"{platform.node()} {os.cpu_count()} cores", "workers": args.workers,
               "batch_size": args.batch_size, "precision": enc.precision, "decode": args.decode,
               "date": time.strftime("%Y-%m-%d"), "goal_ratio": ">= 0.9", "layouts": {}}
    try:
        # EPIC-layout JPEG folders and Ego4D-layout mp4 clips, about args.frames per video
        w = make_world(work / "world", videos=args.videos, segments_per_video=max(1, args.frames // 24),
                       ego_clips=args.videos, actions_per_clip=max(1, args.frames // 48))
        for layout in args.layouts.split(","):
            if layout in ("jpeg", "tar"):
                root = w["epic"] if layout == "jpeg" else tar_layout(w["epic"], work / "epic-tar")

                def replan(cache_dir, root=root):
                    plan(cache_dir, SplitSource("epic", w["epic"] / "EPIC_100_train.csv", root, "train",
                                                boxes=w["epic"] / "detections"),
                         cache_config=CacheConfig(shard_segments=args.shard_size))
            else:
                def replan(cache_dir):
                    plan(cache_dir, SplitSource("ego4d", w["ego4d"] / "fho_lta_val.json", w["ego4d"] / "clips", "val",
                                                side_files={"taxonomy": w["ego4d"] / "fho_lta_taxonomy.json"}),
                         views=("full_frame",),
                         cache_config=CacheConfig(shard_segments=args.shard_size))
            lcfg = cfg if layout != "mp4" else replace(cfg, decode="cpu")  # videos: the CPU decodes
            views = 2 if layout in ("jpeg", "tar") else 1
            rounds = [measure_round(work, layout, r, lcfg, enc, views, args, size, replan)
                      for r in range(args.rounds)]
            m = sorted(rounds, key=lambda x: x["ratio"])[(len(rounds) - 1) // 2]  # the median
            results["layouts"][layout] = {**m, "decode": lcfg.decode, "rounds": rounds,
                                          "ratio_min": min(x["ratio"] for x in rounds),
                                          "ratio_max": max(x["ratio"] for x in rounds)}
            print(f"{args.model} {layout}: end-to-end {m['end_to_end_fps']:.0f} frames/s, bare "
                  f"encoder {m['bare_encoder_fps']:.0f}, decode only {m['decode_only_fps']:.0f}, "
                  f"{m['bound']} {m['bound_fps']:.0f}; ratio {m['ratio']:.3f}{spread(results['layouts'][layout])} (goal >= 0.9), "
                  f"to the slower stage {m['ratio_to_slower_stage']:.3f}; {m['frames']} frames, "
                  f"peak RSS per worker {m['peak_rss_per_worker_mib']:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

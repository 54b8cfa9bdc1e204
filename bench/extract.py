"""Extraction benchmark: end-to-end frames/s against the bare encoder on the same batches.

Generates EPIC-layout JPEG folders (with detection pickles) and Ego4D-layout mp4 clips, plans
them, and runs the real pipeline (decode, crop, preprocess in DataLoader workers, pack, encode,
write) for ``--model`` with random weights. In the same run it encodes the same number of frames
as pre-built batches with the bare encoder. Reports frames/s of both and their ratio (goal >= 0.9)
per source layout.

usage: python bench/extract.py [--model tiny|ViT-B-16-quickgelu] [--videos 4] [--frames 300]
                               [--workers 2] [--batch-size 64] [--device cpu|cuda]
                               [--precision fp32|fp16] [--json OUT]
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

import torch

from machine import cpu_name
from xmic.cache import CacheConfig
from xmic.extract.config import ExtractConfig
from xmic.extract.encoders import load_encoder
from xmic.extract.pipeline import plan, run_shards
from xmic.extract.world import make_world

TINY = Path(__file__).resolve().parents[1] / "xmic" / "extract" / "configs" / "xmic-tiny-quickgelu.json"


def bare_fps(enc, frames: int, batch: int, size: int) -> float:
    x = torch.randn(batch, 3, size, size)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=300, help="frames per generated video")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--layouts", default="jpeg,mp4")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    model = str(TINY) if args.model == "tiny" else args.model
    enc = load_encoder(model, "random", args.device, args.precision, 0)
    size = enc.preprocess["size"]
    cfg = ExtractConfig(model=model, weights="random", workers=args.workers,
                        batch_size=args.batch_size, device=args.device, precision=args.precision,
                        sampling="all")
    work = Path(tempfile.mkdtemp(prefix="xmic-bench-extract-"))
    results = {"benchmark": "extract", "model": args.model, "device": args.device,
               "card": torch.cuda.get_device_name() if args.device == "cuda" else cpu_name(),
               "machine": f"{platform.node()} {os.cpu_count()} cores", "workers": args.workers,
               "batch_size": args.batch_size, "precision": enc.precision,
               "date": time.strftime("%Y-%m-%d"), "goal_ratio": ">= 0.9", "layouts": {}}
    try:
        # EPIC-layout JPEG folders and Ego4D-layout mp4 clips, about args.frames per video
        w = make_world(work / "world", videos=args.videos, segments_per_video=max(1, args.frames // 24),
                       ego_clips=args.videos, actions_per_clip=max(1, args.frames // 48))
        for layout in args.layouts.split(","):
            if layout == "jpeg":
                plan(work / "c-jpeg", "epic", w["epic"] / "EPIC_100_train.csv", w["epic"], "train",
                     boxes=w["epic"] / "detections", cache_config=CacheConfig(shard_segments=8))
            else:
                plan(work / "c-mp4", "ego4d", w["ego4d"] / "fho_lta_val.json", w["ego4d"] / "clips",
                     "val", views=("full_frame",), taxonomy=w["ego4d"] / "fho_lta_taxonomy.json",
                     cache_config=CacheConfig(shard_segments=8))
            t0 = time.perf_counter()
            s = run_shards(work / f"c-{layout}", cfg, encoder=enc, echo=lambda *a: None)
            wall = time.perf_counter() - t0
            views = 2 if layout == "jpeg" else 1
            encoded = s["frames"] * views  # frames through the encoder, all views
            e2e = encoded / wall
            bare = bare_fps(enc, encoded, args.batch_size, size)
            results["layouts"][layout] = {"frames": encoded, "end_to_end_fps": round(e2e, 1),
                                          "bare_encoder_fps": round(bare, 1),
                                          "ratio": round(e2e / bare, 3), "seconds": round(wall, 2),
                                          "failed": s["segments_failed"]}
            print(f"{args.model} {layout}: end-to-end {e2e:.0f} frames/s, bare encoder {bare:.0f} "
                  f"frames/s, ratio {e2e / bare:.3f} (goal >= 0.9), {encoded} frames", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

"""Training benchmark: the full X-MIC step against the bare model step, and epoch time.

Builds an in-memory EPIC-100-scale feature bank (67,217 segments x 32 frames, hand_crop and
full_frame views, 512-d float16; ``--scale`` shrinks it) and the default X-MIC adapter, then
reports, in one run:
- samples/s of the full training step (vectorised sampling + gather + forward + backward +
  optimizer, ``xmic.train.steppers.train_step``) against samples/s of the bare forward + backward on
  batches built beforehand (goal: ratio >= 0.9), and against forward + backward + optimizer;
- seconds for ``--epochs`` full epochs at that scale (the real sampling and step, in order).

usage: python bench/train.py [--scale 0.1] [--device cpu|cuda] [--steps 30] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch
from machine import cpu_name
import torch.nn.functional as F

from xmic.cache.sampling import rows_layout
from xmic.train.data import FeatureBank, batch
from xmic.train.steppers import _lr_factor, train_step
from xmic.train.model import XMICAdapter

SEGMENTS, FRAMES_PER_SEGMENT, DIM, CLASSES = 67_217, 32, 512, 300


def make_bank(n: int, device: torch.device) -> FeatureBank:
    g = torch.Generator().manual_seed(0)
    counts = torch.full((n,), FRAMES_PER_SEGMENT, dtype=torch.long)
    starts = torch.arange(n, dtype=torch.long) * FRAMES_PER_SEGMENT
    feats = {v: torch.randn(n * FRAMES_PER_SEGMENT, DIM, generator=g).half().to(device)
             for v in ("hand_crop", "full_frame")}
    lay = rows_layout("epic", counts.numpy(), 16)  # every row a frame of the segment
    layout = tuple(torch.from_numpy(x).to(device) for x in (lay.begin, lay.count, lay.eval))
    return FeatureBank(feats, {v: starts.to(device) for v in feats},
                       {v: counts.to(device) for v in feats}, {v: layout for v in feats},
                       torch.randint(0, CLASSES, (n,), generator=g).to(device),
                       [str(i) for i in range(n)], [str(i // 100) for i in range(n)], {})


def setup(device: torch.device, steps_per_epoch: int):
    torch.manual_seed(0)
    model = XMICAdapter().to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4,
                            betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, 5 * steps_per_epoch, 5e-4, 1e-7))
    amp = torch.float16 if device.type == "cuda" else None  # the autocast dtype, as training's
    return model, opt, sched, torch.amp.GradScaler(device.type, enabled=amp is not None), amp


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed steps for the step comparison")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--epochs", type=int, default=1, help="full epochs to time (0: none)")
    ap.add_argument("--compile", action="store_true",
                    help="also time the full step with torch.compile (train.compile=true)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = max(args.batch_size, round(SEGMENTS * args.scale))
    bank = make_bank(n, device)
    w = torch.randn(CLASSES, DIM, device=device)
    steps_per_epoch = math.ceil(n / args.batch_size)
    gen = torch.Generator(device=device).manual_seed(0)
    views = ["hand_crop", "full_frame"]
    bs, k = args.batch_size, args.steps

    def full_steps(model, opt, sched, scaler, amp, count):
        order = torch.randperm(n, generator=gen, device=device)
        for seg in order.split(bs)[:count]:
            f, x, y = batch(bank, seg, "hand_crop", views, 16, gen, train=True)
            train_step(model, opt, sched, scaler, f, x, y, w, amp)

    model, opt, sched, scaler, amp = setup(device, steps_per_epoch)
    full_steps(model, opt, sched, scaler, amp, 3)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    full_steps(model, opt, sched, scaler, amp, k)
    sync(device)
    full_sps = k * bs / (time.perf_counter() - t0)

    order = torch.randperm(n, generator=gen, device=device)
    prebuilt = [batch(bank, seg, "hand_crop", views, 16, gen, train=True)
                for seg in order.split(bs)[:k]]
    for label, with_opt in (("fwd_bwd", False), ("fwd_bwd_opt", True)):
        model, opt, sched, scaler, amp = setup(device, steps_per_epoch)
        for f, x, y in prebuilt[:3]:
            train_step(model, opt, sched, scaler, f, x, y, w, amp)
        sync(device)
        t0 = time.perf_counter()
        for f, x, y in prebuilt:
            if with_opt:
                train_step(model, opt, sched, scaler, f, x, y, w, amp)
            else:
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp is not None):
                    loss = F.cross_entropy(model(f, x, w).float(), y)
                model.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
        sync(device)
        if label == "fwd_bwd":
            bare_sps = k * bs / (time.perf_counter() - t0)
        else:
            bare_opt_sps = k * bs / (time.perf_counter() - t0)

    result = {"benchmark": "train", "device": str(device),
              "card": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
              "cpu_threads": torch.get_num_threads(), "segments": n, "batch_size": bs,
              "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {os.cpu_count()} cores",
              "full_step_samples_per_s": round(full_sps, 1),
              "bare_fwd_bwd_samples_per_s": round(bare_sps, 1),
              "bare_fwd_bwd_opt_samples_per_s": round(bare_opt_sps, 1),
              "ratio_full_vs_fwd_bwd": round(full_sps / bare_sps, 3),
              "ratio_full_vs_fwd_bwd_opt": round(full_sps / bare_opt_sps, 3), "goal_ratio": ">= 0.9"}
    print(f"{device} ({result['card']}), {n} segments, batch {bs}: full step {full_sps:.0f} samples/s"
          f" | bare fwd+bwd {bare_sps:.0f} (ratio {result['ratio_full_vs_fwd_bwd']}, goal >= 0.9)"
          f" | bare fwd+bwd+opt {bare_opt_sps:.0f} (ratio {result['ratio_full_vs_fwd_bwd_opt']})",
          flush=True)
    if args.compile:
        from xmic.train.steppers import compiled
        from xmic.train.config import TrainConfig
        model, opt, sched, scaler, amp = setup(device, steps_per_epoch)
        fast = compiled(model, TrainConfig(compile=True))
        t0 = time.perf_counter()
        full_steps(fast, opt, sched, scaler, amp, 3)  # warm-up: compiles
        sync(device)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full_steps(fast, opt, sched, scaler, amp, k)
        sync(device)
        compiled_sps = k * bs / (time.perf_counter() - t0)
        result.update(compiled_step_samples_per_s=round(compiled_sps, 1),
                      ratio_compiled_vs_eager=round(compiled_sps / full_sps, 3),
                      compile_seconds=round(compile_s, 1))
        print(f"compiled full step {compiled_sps:.0f} samples/s: x{compiled_sps / full_sps:.3f} "
              f"the eager step (compiling and warm-up {compile_s:.0f} s)", flush=True)
    if args.epochs:
        model, opt, sched, scaler, amp = setup(device, steps_per_epoch)
        full_steps(model, opt, sched, scaler, amp, 3)  # warm-up, as above
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            full_steps(model, opt, sched, scaler, amp, steps_per_epoch)
        sync(device)
        total = time.perf_counter() - t0
        result.update(epochs=args.epochs, epochs_s=round(total, 2),
                      epoch_s=round(total / args.epochs, 2),
                      epoch_s_full_scale_estimate=round(total / args.epochs * SEGMENTS / n, 1))
        print(f"{args.epochs} epoch(s) over {n} segments: {total:.1f} s ({result['epoch_s']} s each; "
              f"x{SEGMENTS / n:.1f} -> {result['epoch_s_full_scale_estimate']} s per epoch at "
              "EPIC-100 scale)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()

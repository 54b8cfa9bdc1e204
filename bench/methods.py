"""Cost of each method on one cached batch: the paper's memory claim, measured.

For zero-shot, linear probe, CLIP-Adapter, X-MIC, CoOp and CoCoOp, on the same cached batch
(classified frames f [B, 16, D], conditioning frames x [B, 16, 2, D], labels, C class names and
their text embeddings from the tower): trainable parameters, training step time (forward +
backward + AdamW, the training loop's own ``train_step``) and peak memory of the step (GPU:
``torch.cuda.max_memory_allocated`` above what was allocated before; CPU: the process's peak
resident memory above its resident memory before, the peak reset through /proc/self/clear_refs).
Text towers: ``tiny`` (the test config) and ``ViT-B-16-quickgelu`` (random weights: the cost does
not depend on them). CoCoOp runs at the largest of ``--cocoop-batches`` that fits (on a GPU an
out-of-memory moves on to the next smaller one); every method is also measured at CoCoOp's
batch so that the ratios CoCoOp/X-MIC and CoOp/X-MIC compare equal batches.

usage: python bench/methods.py [--towers tiny,ViT-B-16-quickgelu] [--device cpu|cuda]
           [--classes 300] [--batches 32,128] [--cocoop-batches 128,32] [--json OUT]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from machine import cpu_name
from xmic.config import load_config
from xmic.towers.text_tower import TextTower, build_text_tower
from xmic.train.build import build_model, text_input
from xmic.train.config import TrainConfig
from xmic.train.steppers import train_step
from xmic.train.methods import METHODS as ALL_METHODS, tower_methods
from xmic.train.model import trainable_parameters
from xmic.towers.encoders import TINY_CONFIG

TINY = TINY_CONFIG
METHODS = tuple(ALL_METHODS)  # the method table's order
PER_VIDEO = [m for m in METHODS if ALL_METHODS[m].text_per_video]  # at their own batch sizes
FRAMES, VIEWS = 16, 2


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak bytes allocated during the block above what was allocated before it."""

    def __init__(self, device: torch.device):
        self.device, self.bytes = device, 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory back to the OS first
            except OSError:
                pass
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5\n")  # resets the peak resident size (VmHWM)
            self.base = _rss_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.base
        else:
            self.bytes = max(0, _rss_kb("VmHWM") * 1024 - self.base)


def measure(method: str, batch: int, tower: TextTower, w_emb: torch.Tensor, names: list[str],
            device: torch.device, steps: int, min_seconds: float) -> dict:
    """Parameters, median step time and peak memory of ``method`` at ``batch``."""
    cfg = load_config(TrainConfig, None, [f"method={method}", f"batch_size={batch}",
                                          f"device={device.type}"])
    d, c = w_emb.shape[1], len(names)
    torch.manual_seed(0)
    model = build_model(cfg, d, d, c, tower).to(device)
    w = text_input(cfg, names, w_emb.cpu().numpy(), tower, device)
    gen = torch.Generator().manual_seed(batch)
    f = torch.randn(batch, FRAMES, d, generator=gen).to(device)               # [B, T, D]
    x = torch.randn(batch, FRAMES, VIEWS, d, generator=gen).to(device)        # [B, T, V, D]
    y = torch.randint(0, c, (batch,), generator=gen).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    row = {"method": method, "batch": batch, "params": trainable_parameters(model)}
    if not params:  # zero-shot: nothing trains; its cost is one forward pass
        with PeakMemory(device) as mem, torch.no_grad():
            t = time.perf_counter()
            model(f, x, w)
            _sync(device)
        return {**row, "step_s": time.perf_counter() - t, "peak_mb": mem.bytes / 2**20,
                "note": "forward only (no parameters)"}
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    amp = cfg.autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    times = []
    with PeakMemory(device) as mem:
        t = time.perf_counter()
        train_step(model, opt, sched, scaler, f, x, y, w, amp)  # warm-up (and optimizer state)
        _sync(device)
        first = time.perf_counter() - t
        while first < 5.0 and len(times) < steps:  # a step of seconds is timed once
            t = time.perf_counter()
            train_step(model, opt, sched, scaler, f, x, y, w, amp)
            _sync(device)
            times.append(time.perf_counter() - t)
            if sum(times) >= min_seconds and len(times) >= 3:
                break
    return {**row, "step_s": statistics.median(times or [first]), "peak_mb": mem.bytes / 2**20,
            "steps_timed": len(times) or 1, **({} if times else {"note": "first step timed"})}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_tower(name: str, device, classes: int, batches: list[int], cocoop_batches: list[int],
                steps: int, min_seconds: float, echo) -> dict:
    tower = build_text_tower(str(TINY) if name == "tiny" else name, "random", 0, device)
    names = [f"object {i}" for i in range(classes)]
    w_emb = tower.encode_texts(names).float()                                   # [C, D]
    rows, fitted = [], None
    for b in sorted(cocoop_batches, reverse=True):  # CoCoOp at the largest batch that fits
        try:
            rows.append(measure("cocoop", b, tower, w_emb, names, device, steps, min_seconds))
            echo(json.dumps(rows[-1]))
            fitted = b
            break
        except torch.cuda.OutOfMemoryError:
            echo(f"{name}: cocoop at batch {b} does not fit")
            torch.cuda.empty_cache()
    for b in sorted(set(batches) | ({fitted} if fitted else set())):
        for m in METHODS:
            if m in PER_VIDEO:
                continue
            rows.append(measure(m, b, tower, w_emb, names, device, steps, min_seconds))
            echo(json.dumps(rows[-1]))
    ratios = {}
    by = {(r["method"], r["batch"]): r for r in rows}
    for b in sorted({r["batch"] for r in rows}):
        base = by.get(("xmic", b))
        for m in tower_methods():
            r = by.get((m, b))
            if base and r:
                ratios[f"{m}/xmic@{b}"] = {"step_time": round(r["step_s"] / base["step_s"], 1),
                                           "peak_memory": round(r["peak_mb"] / max(base["peak_mb"], 1e-3), 1),
                                           "params": round(r["params"] / base["params"], 4)}
    return {"tower": name, "width": tower.width, "dim": tower.dim, "cocoop_batch": fitted,
            "cocoop_batches_tried": cocoop_batches, "rows": rows, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--towers", default="tiny,ViT-B-16-quickgelu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--classes", type=int, default=300)
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--cocoop-batches", default="128,32",
                    help="CoCoOp batch sizes to try, largest first (per tower: NAME=B1,B2;...)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(os.cpu_count() or 1)
    per_tower = {}
    for part in a.cocoop_batches.split(";"):
        key, _, val = part.rpartition("=")
        per_tower[key or "*"] = [int(b) for b in val.split(",")]
    res = {"benchmark": "methods", "machine": f"{platform.node()} {os.cpu_count()} cores",
           "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d"), "device": device.type,
           "card": torch.cuda.get_device_name() if device.type == "cuda" else "",
           "classes": a.classes, "frames": FRAMES, "torch": torch.__version__, "towers": []}
    for name in a.towers.split(","):
        cb = per_tower.get(name, per_tower.get("*", [32]))
        res["towers"].append(bench_tower(name, device, a.classes, [int(b) for b in a.batches.split(",")],
                                         cb, a.steps, a.min_seconds, print))
        print(json.dumps(res["towers"][-1]["ratios"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

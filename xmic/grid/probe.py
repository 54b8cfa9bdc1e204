"""A quick measurement of what each method of a planned grid costs (``grid plan --probe``).

Input: a planned grid and a number of segments. For each method, its first planned run is
trained for one epoch (none for a method that does not train) on that many of its source
split's segments, drawn at random (seeded), then scored on that many segments of each of its
targets, in a temporary folder of the grid that is removed afterwards; nothing of the grid's own
runs is touched. Output: per method (seconds per epoch per training segment, epochs measured,
seconds beside the epochs: loading the splits, building the model, and scoring the run's targets
scaled from the sample to each target split's size), the form ``grid.costs.price`` turns into
each run's expected cost. A method whose probe fails is left unmeasured, with the reason.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xmic.config import XmicError
from xmic.evaluate.run import evaluate_run
from xmic.files.atomic import remove_tree
from xmic.grid.class_lists import list_folders
from xmic.grid.costs import split_segments
from xmic.grid.layout import PROBE_PREFIX
from xmic.grid.state import epoch_seconds
from xmic.train.data import load_bank
from xmic.train.loop import train


class SampledBank:
    """``load_bank`` that keeps ``segments`` of the split, drawn at random (seeded); ``used``:
    how many the first load (the split a run trains on) kept, ``load_s``: seconds spent loading
    whole splits."""

    def __init__(self, segments: int, seed: int = 0):
        self.segments, self.seed, self.used, self.load_s = segments, seed, 0, 0.0

    def __call__(self, cache, split, views, label, classes, device, frames=16, offset=0):
        t = time.perf_counter()
        bank = load_bank(cache, split, views, label, classes, device, frames, offset)
        self.load_s += time.perf_counter() - t
        if len(bank) > self.segments:
            pick = np.random.default_rng(self.seed).choice(len(bank), self.segments, replace=False)
            bank = bank.subset(np.sort(pick))
        self.used = self.used or len(bank)
        return bank


def _scoring_seconds(grid_dir: Path, grid: dict, run: dict, cfg, folder: Path,
                     segments: int, memo: dict) -> float:
    """Seconds to score ``run``'s targets: each target's load as measured, its scoring time on
    the sample scaled to the target split's size."""
    total = 0.0
    for i, t in enumerate(run["targets"]):
        loader = SampledBank(segments, cfg.seed)
        start = time.perf_counter()
        evaluate_run(folder / "run", t["cache"], t["split"], list_folders(grid_dir, grid),
                     folder / f"eval-{i}", device=cfg.device, bank_loader=loader,
                     classes=t.get("classes", "all"))
        scoring = time.perf_counter() - start - loader.load_s
        n = split_segments(t["cache"], t["split"], memo) or loader.used
        total += loader.load_s + scoring * n / max(1, loader.used)
    return total


def probe_rates(grid_dir: Path, grid: dict, segments: int = 256, echo=print) -> dict:
    """Method -> (seconds per epoch per training segment, epochs measured, seconds beside the
    epochs), measured on ``segments`` segments of the method's first run and its targets."""
    from xmic.grid.plan import run_config
    grid_dir = Path(grid_dir)
    rates, memo = {}, {}
    for method in dict.fromkeys(r["method"] for r in grid["runs"]):
        run = next(r for r in grid["runs"] if r["method"] == method)
        cfg = run_config(grid_dir, run)
        cfg = replace(cfg, epochs=min(cfg.epochs, 1),
                      log=replace(cfg.log, tensorboard=False, wandb=False))
        folder = Path(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=grid_dir))
        loader = SampledBank(segments, cfg.seed)
        try:
            t = time.perf_counter()
            train(run["cache"], cfg, folder / "run", echo=lambda *a, **k: None,
                  bank_loader=loader)
            took = time.perf_counter() - t
            epochs = epoch_seconds(folder / "run")
            scoring = _scoring_seconds(grid_dir, grid, run, cfg, folder, segments, memo)
        except (XmicError, OSError, RuntimeError, ValueError) as e:
            echo(f"probe of {method}: FAILED ({e}); its runs are not priced")
            continue
        finally:
            remove_tree(folder, grid_dir)
        rate = statistics.mean(epochs) / loader.used if epochs and loader.used else 0.0
        rates[method] = (rate, len(epochs), max(0.0, took - sum(epochs)) + scoring)
        what = f"1 epoch on {loader.used} segments" if epochs else "nothing to train"
        echo(f"probe of {method}: {what}, {took:.1f}s; scoring {len(run['targets'])} "
             f"target(s) on up to {segments} segments each, about {scoring:.1f}s at full size")
    return rates

"""A quick measurement of what each method of a planned grid costs (``grid plan --probe``).

Input: a planned grid and a number of segments. For each method, its first planned run is
trained for one epoch (none for a method that does not train) on that many of its source
split's segments, drawn at random (seeded), in a temporary folder of the grid that is removed
afterwards; nothing of the grid's own runs is touched. Output: per method (seconds per epoch per
training segment, epochs measured, seconds beside the epoch: loading the split and building the
model), the form ``grid.costs.price`` turns into each run's expected cost. A method whose probe
fails is left unmeasured, with the reason.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xmic.config import XmicError
from xmic.files.atomic import remove_tree
from xmic.grid.layout import PROBE_PREFIX
from xmic.grid.state import epoch_seconds
from xmic.train.data import load_bank
from xmic.train.loop import train

class SampledBank:
    """``load_bank`` that keeps ``segments`` of the split, drawn at random (seeded); ``used``:
    how many the last load kept."""

    def __init__(self, segments: int, seed: int = 0):
        self.segments, self.seed, self.used = segments, seed, 0

    def __call__(self, cache, split, views, label, classes, device, frames=16, offset=0):
        bank = load_bank(cache, split, views, label, classes, device, frames, offset)
        if len(bank) > self.segments:
            pick = np.random.default_rng(self.seed).choice(len(bank), self.segments, replace=False)
            bank = bank.subset(np.sort(pick))
        self.used = len(bank)
        return bank


def probe_rates(grid_dir: Path, grid: dict, segments: int = 256, echo=print) -> dict:
    """Method -> (seconds per epoch per training segment, epochs measured, seconds beside the
    epoch), measured on one epoch of ``segments`` segments of the method's first run."""
    from xmic.grid.plan import run_config
    grid_dir = Path(grid_dir)
    rates = {}
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
        except (XmicError, OSError, RuntimeError, ValueError) as e:
            echo(f"probe of {method}: FAILED ({e}); its runs are not priced")
            continue
        finally:
            remove_tree(folder, grid_dir)
        rate = statistics.mean(epochs) / loader.used if epochs and loader.used else 0.0
        rates[method] = (rate, len(epochs), max(0.0, took - sum(epochs)))
        what = f"1 epoch on {loader.used} segments" if epochs else "nothing to train"
        echo(f"probe of {method}: {what}, {took:.1f}s in all")
    return rates

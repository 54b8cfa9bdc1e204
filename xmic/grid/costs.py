"""What a planned grid's runs should cost, per method, measured on another grid or a probe.

Inputs: a planned grid (``grid.json`` body), and the folder of a grid run before
(``--costs-from``: its runs' measured epochs, ``metrics.jsonl`` seconds, and finished runs) or
the rates of ``grid.probe`` (``--probe``). A method's cost is carried over as seconds per epoch
per training segment, scaled by each new run's epochs and the segments of its source split (a
cache's plan), since both differ between grids, plus what a run spent beside its epochs
(loading; for a finished run also scoring the targets). Output: per method the expected seconds
of one run and what it rests on, kept in ``GRID/costs-from.json``, which ``grid status`` and
``grid run`` read for methods this grid has not measured yet.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import pyarrow.compute as pc

from xmic.cache import Cache
from xmic.config import XmicError
from xmic.files.atomic import write_json_atomic
from xmic.grid.layout import BORROWED_COSTS
from xmic.grid.state import epoch_seconds, planned_epochs, run_state


def split_segments(cache: str, split: str, memo: dict) -> int | None:
    """Segments of a cache's split (its plan), or None when the cache cannot be read."""
    key = (cache, split)
    if key not in memo:
        try:
            plan = Cache.open(cache).plan()
            memo[key] = int(pc.sum(pc.equal(plan["split"], split)).as_py() or 0) or None
        except XmicError:
            memo[key] = None
    return memo[key]


def measured_rates(other_dir: Path, other: dict, memo: dict) -> dict:
    """Method -> (seconds per epoch per training segment, epochs measured, seconds of a
    finished run beside its epochs: loading, scoring its targets), from a grid's runs."""
    per: dict = {}
    rest: dict = {}
    for run in other["runs"]:
        n = split_segments(run["cache"], run["split"], memo)
        seconds = epoch_seconds(Path(other_dir) / run["dir"])
        if n and seconds:
            per.setdefault(run["method"], []).extend(s / n for s in seconds)
            done = run_state(other_dir, run)
            if done["state"] == "done" and done.get("seconds"):
                rest.setdefault(run["method"], []).append(max(0.0, done["seconds"] - sum(seconds)))
    return {m: (statistics.mean(r), len(r), statistics.mean(rest.get(m) or [0.0]))
            for m, r in per.items()}


def price(grid_dir: Path, grid: dict, rates: dict, source: str, memo: dict) -> dict:
    """Expected seconds per run of each method of ``grid`` that ``rates`` (``measured_rates``'
    form) measured, written to ``GRID/costs-from.json`` and returned as ``{"from",
    "methods": {m: {...}}, "unmeasured"}``; ``source`` says where the rates were measured."""
    methods, unmeasured = {}, []
    for m in dict.fromkeys(r["method"] for r in grid["runs"]):
        runs = [r for r in grid["runs"] if r["method"] == m]
        sizes = [split_segments(r["cache"], r["split"], memo) for r in runs]
        if m not in rates or not all(sizes):
            unmeasured.append(m)
            continue
        rate, epochs, rest = rates[m]
        expected = statistics.mean(rate * n * planned_epochs(r) for r, n in zip(runs, sizes)) + rest
        methods[m] = {"seconds_per_run": round(expected, 1), "epochs_measured": epochs,
                      "seconds_per_epoch_per_segment": rate, "seconds_beside_epochs": rest}
    record = {"from": source, "methods": methods, "unmeasured": unmeasured}
    write_json_atomic(Path(grid_dir) / BORROWED_COSTS, record, root=Path(grid_dir))
    return record


def borrow_costs(grid_dir: Path, grid: dict, other_dir: Path) -> dict:
    """``price`` at the rates ``other_dir``, a grid run before, measured."""
    from xmic.grid.plan import load_grid
    memo: dict = {}
    return price(grid_dir, grid, measured_rates(other_dir, load_grid(other_dir), memo),
                 str(other_dir), memo)

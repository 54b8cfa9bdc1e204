"""Confidence intervals of a grid's table cells, and which best cells are significant.

Input: a grid (its plan and its runs' ``predictions.parquet``), the metric and class-split
criterion of the table, the number of resamples and a seed. Output: ``Significance``: per
(label, column, method) the 95 % percentile interval of the paired bootstrap
(``xmic.evaluate.bootstrap``: segments resampled alike for every method of a source -> target
cell, each method's seeds resampled too; an HM column combines the in-dataset and cross-dataset
resamples, per resample), and per (label, column) the best method when its difference to the
second has an interval above 0. Segments are aligned by id; a segment one method skipped (a view
it reads failed there) is left out of that cell for all, and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xmic.evaluate.bootstrap import Outcomes, difference, interval, samples
from xmic.grid.state import eval_dir
from xmic.train.run_folder import PREDICTIONS


@dataclass
class Significance:
    metric: str
    criterion: str
    n: int
    seed: int
    level: float = 0.95
    intervals: dict = field(default_factory=dict)   # (label, column, method) -> (lo, hi)
    winners: dict = field(default_factory=dict)     # (label, column) -> method or None
    gaps: dict = field(default_factory=dict)        # (label, column) -> (first, second, lo, hi)
    dropped: dict = field(default_factory=dict)     # draws key -> segments left out

    def note(self) -> str:
        return (f"[lo, hi]: {100 * self.level:.0f}% interval of a paired bootstrap over segments "
                f"and seeds ({self.n} resamples, seed {self.seed}); bold: the best, only where "
                "its difference to the second has an interval above 0.")


def _read(path: Path, criterion: str):
    t = pq.read_table(path)
    ids = t["segment_id"].to_pylist()
    correct = (pc.list_element(t["top5_ids"], 0).to_numpy(zero_copy_only=False)
               == t["true_id"].to_numpy(zero_copy_only=False))
    shared = (t[f"shared_{criterion}"].to_numpy(zero_copy_only=False).astype(bool)
              if f"shared_{criterion}" in t.column_names else None)
    return ids, correct, t["true_id"].to_numpy(zero_copy_only=False), shared


def cell_outcomes(grid_dir: Path, runs: list[dict], target: str, criterion: str,
                  classes: str = "all"):
    """(method -> Outcomes, segments left out) of one source -> target cell of one label
    (``classes``: a base-to-novel run's base or novel evaluation)."""
    per: dict = {}
    for r in runs:
        t = next((t for t in r["targets"] if t["dataset"] == target
                  and t.get("classes", "all") == classes), None)
        path = eval_dir(Path(grid_dir) / r["dir"], t) / PREDICTIONS if t else None
        if path is not None and path.is_file():
            per.setdefault(r["method"], []).append(_read(path, criterion))
    if not per:
        return {}, 0
    common = set.intersection(*(set(ids) for got in per.values() for ids, *_ in got))
    union = set.union(*(set(ids) for got in per.values() for ids, *_ in got))
    order = sorted(common)
    out = {}
    for method, got in per.items():
        rows = []
        for ids, correct, labels, shared in got:
            pos = {s: i for i, s in enumerate(ids)}
            at = np.array([pos[s] for s in order], dtype=np.int64)
            rows.append((correct[at], labels[at], None if shared is None else shared[at]))
        shared = rows[0][2]
        out[method] = Outcomes(np.stack([r[0] for r in rows]), rows[0][1],
                               {} if shared is None else {criterion: shared})
    return out, len(union) - len(common)


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b > 0, 2 * a * b / (a + b), 0.0)


def significance(grid_dir: Path, grid: dict, tables: list, metric: str, criterion: str,
                 n: int = 1000, seed: int = 0, level: float = 0.95) -> Significance:
    """Intervals and significant winners of ``tables`` (``(label, what, cols, body)`` of
    ``grid.table.label_tables`` or ``side_by_side``: a column of four names its backbone; a
    base-to-novel table's base and novel columns are top-1 on those evaluations, its HM the
    harmonic mean of both, per resample)."""
    sig = Significance(metric, criterion, n, seed, level)
    cache: dict = {}

    def draws(label, source, target, classes="all", backbone=None):
        key = (label, source, target, classes, backbone)
        if key not in cache:
            runs = [r for r in grid["runs"] if r["label"] == label and r["source"] == source
                    and (backbone is None or r.get("backbone", "") == backbone)]
            outcomes, dropped = cell_outcomes(grid_dir, runs, target, criterion, classes)
            sig.dropped[key] = dropped
            what = metric if classes == "all" else "top1"  # base / novel: top-1 of that part
            ok = {m: o for m, o in outcomes.items()
                  if len(o.labels) and (what not in ("shared", "novel", "hm") or o.shared)}
            name = "/".join(k for k in (label, source, target) + (() if classes == "all" else
                                                                    (classes,)) if k)
            cache[key] = samples(ok, what, criterion, n, seed, name) if ok else {}
        return cache[key]

    def combined(a, b):
        return {m: _harmonic(a[m], b[m]) for m in a if m in b}

    for label, _, cols, body in tables:
        for col in cols:
            kind, s, t = col[:3]
            backbone = col[3] if len(col) == 4 else None
            if kind == "score":
                got = draws(label, s, t, backbone=backbone)
            elif kind in ("base", "novel"):
                got = draws(label, s, t, kind, backbone)
            elif kind == "b2n-hm":
                got = combined(draws(label, s, t, "base", backbone),
                               draws(label, s, t, "novel", backbone))
            else:
                got = combined(draws(label, s, s, backbone=backbone),
                               draws(label, s, t, backbone=backbone))
            shown = {m: body[m][col][0] for m in got
                     if m in body and isinstance(body[m][col], tuple)}  # the table's means
            for m in shown:
                sig.intervals[(label, col, m)] = interval(got[m], level)
            if len(shown) >= 2:
                first, second = sorted(shown, key=shown.get, reverse=True)[:2]
                lo, hi = difference(got[first], got[second], level)
                sig.gaps[(label, col)] = (first, second, lo, hi)
                sig.winners[(label, col)] = first if lo > 0 else None
    return sig


def significance_frame(grid_dir, metric: str = "top1", criterion: str = "exact",
                       n: int = 1000, seed: int = 0, level: float = 0.95):
    """The bootstrap's summary as a DataFrame: one row per (label, column, method) with the
    table's mean, the interval, and whether it is the column's significant best (with the
    interval of its difference to the second)."""
    import pandas as pd

    from xmic.grid.plan import load_grid
    from xmic.grid.results import backbone_names, grid_results, rows_by_backbone
    from xmic.grid.table import label_tables
    grid = load_grid(grid_dir)
    df = grid_results(Path(grid_dir), grid)[0]
    if backbone_names(grid) != [""]:
        df, grid = rows_by_backbone(df, grid)  # a row per method and backbone
    tables = label_tables(df, grid, metric, criterion)
    sig = significance(Path(grid_dir), grid, tables, metric, criterion, n, seed, level)
    rows = []
    for label, _, cols, body in tables:
        for col in cols:
            gap = sig.gaps.get((label, col))
            for method, row in body.items():
                got = sig.intervals.get((label, col, method))
                if got is None:
                    continue
                first = gap is not None and gap[0] == method
                rows.append({"label": label, "column": col[0], "source": col[1],
                             "target": col[2], "method": method, "metric": metric,
                             "criterion": criterion if metric in ("shared", "novel", "hm")
                             else None, "mean": row[col][0], "ci_low": got[0],
                             "ci_high": got[1],
                             "significant_best": sig.winners.get((label, col)) == method,
                             "gap_to_second_low": gap[2] if first else None,
                             "gap_to_second_high": gap[3] if first else None,
                             "resamples": n, "seed": seed})
    return pd.DataFrame(rows)


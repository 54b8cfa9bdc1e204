"""Significance benchmark: ``grid table --ci`` on a generated grid of many runs.

Writes a grid folder of ``--runs`` runs (``--methods`` methods x 2 sources x 2 labels x seeds,
each scored on 3 targets of ``--segments`` segments) as the runner leaves it: per evaluation a
``predictions.parquet`` (top-1 right for a share of segments that differs by method) and
``metrics.json``. Measures in one run the table without intervals, the table with ``--ci``
(``--samples`` resamples of the paired bootstrap, top-1 and HM of shared/novel) and a plain-loop
bootstrap of one cell's methods and seeds (numpy indices per resample, as a textbook writes
it), and reports the seconds and the ratios (the vectorised bootstrap's speed-up over the loop).

usage: python bench/significance.py [--runs 200] [--segments 5000] [--samples 1000] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from machine import cpu_name
from xmic.grid.results import grid_results
from xmic.grid.significance import significance
from xmic.grid.table import grid_tables, label_tables

TARGETS = {"epic": "validation", "ego4d": "val", "egtea": "test"}


def write_grid(root: Path, runs: int, segments: int, methods: int) -> dict:
    rng = np.random.default_rng(0)
    seeds = max(1, runs // (methods * 2 * 2))
    labels = {ds: rng.integers(0, 50, segments) for ds in TARGETS}
    shared = {ds: labels[ds] < 25 for ds in TARGETS}
    rows = []
    for source in ("epic", "ego4d"):
        for label in ("noun", "verb"):
            for m in range(methods):
                for seed in range(seeds):
                    rid = f"{source}-{label}-m{m}-seed{seed}"
                    targets = []
                    for ds, split in TARGETS.items():
                        d = root / "runs" / rid / "eval" / f"{ds}-{split}"
                        d.mkdir(parents=True)
                        right = rng.random(segments) < 0.4 + 0.02 * m
                        lab = labels[ds]
                        pq.write_table(pa.table({
                            "segment_id": [f"s{i}" for i in range(segments)], "true_id": lab,
                            "top5_ids": pa.array(np.where(right, lab, (lab + 1) % 50)[:, None]
                                                 .tolist()),
                            "shared_exact": shared[ds]}), d / "predictions.parquet")
                        t1 = 100 * right.mean()
                        s, n = 100 * right[shared[ds]].mean(), 100 * right[~shared[ds]].mean()
                        (d / "metrics.json").write_text(json.dumps({
                            "top1": t1, "top5": t1, "mean_class_acc": t1, "shared_exact": s,
                            "novel_exact": n, "hm_exact": 2 * s * n / (s + n), "n": segments,
                            "classes": 50, "dataset": ds, "split": split, "label": label,
                            "in_dataset": ds == source}))
                        targets.append({"dataset": ds, "cache": "c", "split": split})
                    (root / "runs" / rid / "finished.json").write_text('{"seconds": 1}')
                    rows.append({"id": rid, "dir": f"runs/{rid}", "method": f"m{m}",
                                 "trainer": "xmic", "seed": seed, "source": source,
                                 "split": "train", "label": label, "cache": "c", "config": {},
                                 "targets": targets})
    return {"recipe": {"name": "bench", "labels": ["noun", "verb"],
                       "order": {"methods": [f"m{m}" for m in range(methods)],
                                 "sources": ["epic", "ego4d"], "targets": list(TARGETS),
                                 "labels": ["noun", "verb"]}}, "runs": rows}


def plain_bootstrap(correct: np.ndarray, samples: int) -> np.ndarray:
    """[K, S] -> [samples] top-1 by a loop over resamples (indices, then the seeds)."""
    rng = np.random.default_rng(1)
    k, s = correct.shape
    out = np.empty(samples)
    for b in range(samples):
        idx = rng.integers(0, s, s)
        out[b] = 100 * np.mean([correct[j, idx].mean() for j in rng.integers(0, k, k)])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--segments", type=int, default=5000)
    ap.add_argument("--methods", type=int, default=10)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="xmic-bench-sig-"))
    try:
        grid = write_grid(root, a.runs, a.segments, a.methods)
        t0 = time.perf_counter()
        df, missing = grid_results(root, grid)
        grid_tables(df, missing, grid)
        plain_s = time.perf_counter() - t0
        out = {"runs": len(grid["runs"]), "segments": a.segments, "samples": a.samples}
        for metric, criterion in (("top1", "exact"), ("hm", "exact")):
            t0 = time.perf_counter()
            df, missing = grid_results(root, grid)
            grid_tables(df, missing, grid, "md", metric, criterion, ci=lambda t: significance(
                root, grid, t, metric, criterion, a.samples))
            out[f"ci_{metric}_seconds"] = round(time.perf_counter() - t0, 2)
        tables = label_tables(df, grid, "top1", "exact")
        cells = sum(len(cols) for _, _, cols, _ in tables)
        seeds = max(1, a.runs // (a.methods * 4))  # one cell: every method, every seed
        cell = {f"m{m}": np.stack([np.random.default_rng([m, s]).random(a.segments) < 0.5
                                   for s in range(seeds)]) for m in range(a.methods)}
        t0 = time.perf_counter()
        for correct in cell.values():
            plain_bootstrap(correct, a.samples)
        loop_s = time.perf_counter() - t0
        from xmic.evaluate.bootstrap import Outcomes, samples
        t0 = time.perf_counter()
        samples({m: Outcomes(c, np.zeros(a.segments, int), {}) for m, c in cell.items()},
                "top1", n=a.samples)
        vec_s = time.perf_counter() - t0
        out.update(table_seconds=round(plain_s, 2), cells=cells,
                   ratio_ci_vs_plain_table=round(out["ci_top1_seconds"] / max(plain_s, 1e-9), 1),
                   one_cell_loop_seconds=round(loop_s, 3),
                   one_cell_vectorised_seconds=round(vec_s, 3),
                   speedup_vectorised_vs_loop=round(loop_s / max(vec_s, 1e-9), 1),
                   cpu=cpu_name(), machine=platform.machine(), date=time.strftime("%Y-%m-%d"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()

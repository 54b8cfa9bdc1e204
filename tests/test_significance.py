"""The paired bootstrap against a plain numpy version, and `grid table --ci` on a grid whose
predictions are made up so that one difference is real and one is not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xmic.evaluate.bootstrap import Outcomes, _per_seed, interval, samples


def plain(correct, labels, shared, metric, idx):
    """The metric (fraction) of one seed's predictions on the resampled segments ``idx``."""
    c, lab = correct[idx], labels[idx]
    if metric == "top1":
        return c.mean()
    if metric == "class_mean":
        return np.mean([c[lab == k].mean() for k in np.unique(lab)])
    sh = shared[idx]
    s, n = c[sh].mean(), c[~sh].mean()
    return {"shared": s, "novel": n, "hm": 2 * s * n / (s + n) if s + n else 0.0}[metric]


@pytest.mark.parametrize("metric", ["top1", "class_mean", "shared", "novel", "hm"])
def test_each_resample_equals_the_plain_computation(metric):
    rng = np.random.default_rng(1)
    S, K = 300, 3
    labels = rng.integers(0, 12, S)
    shared = labels < 6
    correct = rng.random((K, S)) < np.where(shared, 0.7, 0.4)
    draws = rng.integers(0, S, (20, S))                           # 20 resamples as indices
    w = np.stack([np.bincount(d, minlength=S) for d in draws]).astype(np.float32)
    got = _per_seed(correct, w, metric, labels, shared)            # [20, K]
    want = np.array([[plain(correct[k], labels, shared, metric, d) for k in range(K)]
                     for d in draws])
    assert np.allclose(got, want, atol=1e-5)


def test_intervals_agree_with_a_plain_bootstrap_and_are_reproducible():
    rng = np.random.default_rng(2)
    S, K, B = 400, 3, 2000
    labels = rng.integers(0, 10, S)
    a = rng.random((K, S)) < 0.62
    b = rng.random((K, S)) < 0.58
    out = {"a": Outcomes(a, labels, {}), "b": Outcomes(b, labels, {})}
    ours = samples(out, "top1", n=B, seed=7, key="cell")
    again = samples(out, "top1", n=B, seed=7, key="cell")
    assert all(np.array_equal(ours[m], again[m]) for m in ours)
    alone = samples({"a": out["a"]}, "top1", n=B, seed=7, key="cell")  # b left out: a as it was
    assert np.array_equal(alone["a"], ours["a"])
    ref = np.random.default_rng(3)
    plain_a = []
    for _ in range(B):  # segments, then seeds, resampled with replacement
        idx = ref.integers(0, S, S)
        ks = ref.integers(0, K, K)
        plain_a.append(100 * np.mean([a[k, idx].mean() for k in ks]))
    lo, hi = interval(ours["a"])
    plo, phi = interval(np.array(plain_a))
    assert abs(lo - plo) < 0.8 and abs(hi - phi) < 0.8, (lo, hi, plo, phi)
    assert abs(np.mean(ours["a"]) - 100 * a.mean()) < 0.3


def write_predictions(path: Path, ids, labels, correct, shared):
    path.mkdir(parents=True, exist_ok=True)
    pred = np.where(correct, labels, (labels + 1) % 8)
    pq.write_table(pa.table({"segment_id": ids, "true_id": labels,
                             "top5_ids": [[int(p)] for p in pred],
                             "shared_exact": shared}), path / "predictions.parquet")
    top1 = 100 * correct.mean()
    sh, nv = 100 * correct[shared].mean(), 100 * correct[~shared].mean()
    (path / "metrics.json").write_text(json.dumps({
        "shared_exact": sh, "novel_exact": nv, "hm_exact": 2 * sh * nv / (sh + nv),
        "top1": top1, "top5": top1, "mean_class_acc": top1, "n": len(ids), "classes": 8,
        "dataset": "epic", "split": "validation", "label": "noun", "in_dataset": True}))


def test_grid_table_ci_bolds_only_a_difference_that_holds(tmp_path, monkeypatch):
    """Four methods on 500 segments, 3 seeds: `strong` (80 %) beats `weak` (50 %) beyond
    doubt; `twin-a` and `twin-b` (65 % and 65.5 %) cannot be told apart."""
    from xmic.grid import plan as gplan
    rng = np.random.default_rng(0)
    S = 500
    ids = [f"s{i:04d}" for i in range(S)]
    labels = rng.integers(0, 8, S)
    shared = labels < 4
    runs = []
    rates = {"strong": 0.8, "weak": 0.5, "twin-a": 0.65, "twin-b": 0.655}
    for method, p in rates.items():
        for seed in range(3):
            rid = f"epic-noun-{method}-seed{seed}"
            d = tmp_path / "g" / "runs" / rid
            write_predictions(d / "eval" / "epic-validation", ids, labels, rng.random(S) < p,
                              shared)
            (d / "finished.json").write_text(json.dumps({"seconds": 1}))
            runs.append({"id": rid, "dir": f"runs/{rid}", "method": method, "trainer": "linear",
                         "seed": seed, "source": "epic", "split": "train", "label": "noun",
                         "cache": "c", "config": {},
                         "targets": [{"dataset": "epic", "cache": "c", "split": "validation"}]})
    grid = {"recipe": {"name": "t", "labels": ["noun"], "seeds": [0, 1, 2],
                       "order": {"methods": list(rates)}}, "runs": runs}
    monkeypatch.setattr(gplan, "load_grid", lambda _: grid)
    from xmic.grid.significance import significance, significance_frame
    from xmic.grid.results import grid_results
    from xmic.grid.table import grid_tables, label_tables
    df = grid_results(tmp_path / "g", grid)[0]
    tables = label_tables(df, grid, "top1", "exact")
    sig = significance(tmp_path / "g", grid, tables, "top1", "exact", n=500, seed=0)
    col = ("score", "epic", "epic")
    assert sig.winners[("noun", col)] == "strong"
    lo, hi = sig.intervals[("noun", col, "strong")]
    assert lo < 100 * 0.8 < hi and hi - lo < 8
    text = grid_tables(df, 0, grid, "md", "top1", "exact",
                       ci=lambda t: significance(tmp_path / "g", grid, t, "top1", "exact", 500))
    strong = next(x for x in text.splitlines() if x.startswith("| strong"))
    assert strong.count("**") == 2 and "[" in strong
    assert "**" not in next(x for x in text.splitlines() if x.startswith("| twin-a"))
    assert "paired bootstrap over segments and seeds (500 resamples, seed 0)" in text
    # the twins alone: no bold, the gap's interval holds 0
    twins = {**grid, "runs": [r for r in runs if r["method"].startswith("twin")]}
    t2 = label_tables(grid_results(tmp_path / "g", twins)[0], twins, "top1", "exact")
    s2 = significance(tmp_path / "g", twins, t2, "top1", "exact", n=500)
    assert s2.winners[("noun", col)] is None and s2.gaps[("noun", col)][2] < 0
    frame = significance_frame(tmp_path / "g", "hm", "exact", n=200)
    assert set(frame["method"]) == set(rates) and frame["ci_low"].le(frame["ci_high"]).all()
    assert frame.loc[frame["method"] == "strong", "significant_best"].item()

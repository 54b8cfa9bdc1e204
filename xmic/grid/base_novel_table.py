"""The base-to-novel table of a grid planned with ``protocol: base-to-novel``.

Input: the grid's tidy results (``xmic.grid.results``: each run's base and novel evaluations,
rows with ``classes`` base | novel), a label, the methods and the source datasets in the
recipe's order. Output: ``(cols, body)`` as ``grid.table.paper_table`` gives them, with per
dataset the columns ("base", D, D), ("novel", D, D) and ("b2n-hm", D, D): top-1 on the held-out
split's base classes among base classes, on its novel classes among novel classes, and their
harmonic mean per seed; cells mean ± std over seeds (None: not scored yet).
"""
from __future__ import annotations

from xmic.evaluate.metrics import harmonic_mean
from xmic.grid.results import seed_stats

KINDS = ("base", "novel", "b2n-hm")


def base_novel_table(df, label: str, methods: list[str], sources: list[str]) -> tuple:
    sub = df[(df["label"] == label) & (df["metric"] == "top1")
             & (df["classes"].isin(["base", "novel"]))]
    values: dict = {}  # (method, dataset, part) -> {seed: value}
    for m, ds, part, seed, v in zip(sub["method"], sub["source_dataset"], sub["classes"],
                                    sub["seed"], sub["value"]):
        values.setdefault((str(m), ds, part), {})[int(seed)] = float(v)
    cols = [(kind, s, s) for s in sources for kind in KINDS]
    body = {}
    for method in methods:
        row = {}
        for kind, s, _ in cols:
            if kind == "b2n-hm":
                b, n = values.get((method, s, "base"), {}), values.get((method, s, "novel"), {})
                got = [harmonic_mean(b[k], n[k]) for k in b if k in n]
            else:
                got = list(values.get((method, s, kind), {}).values())
            row[(kind, s, s)] = seed_stats(got)
        body[method] = row
    return cols, body

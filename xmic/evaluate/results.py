"""Tidy results: one row per (run, target, metric), the one form every table and figure reads.

Input: an evaluation's ``metrics.json`` content and what it belongs to (grid, method, seed,
source and target, and for base-to-novel the classes scored: base or novel). Output: rows with the columns of ``COLUMNS`` (``metric`` one of
``METRICS``: top1, top5, class_mean, and shared, novel, hm per class-split ``criterion`` exact or
semantic; ``value`` in percent, missing scores left out), as a pandas DataFrame
(``results_frame``) and as ``results.parquet`` (``write_results``: atomic, below a folder of
ours). ``xmic evaluate`` writes one evaluation's rows, ``xmic grid run``/``table`` a grid's.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

COLUMNS = ("grid", "method", "trainer", "backbone", "overrides", "seed", "source_dataset",
           "source_split",
           "target_dataset", "target_split", "label", "in_dataset", "classes", "criterion",
           "metric", "value", "run")  # classes: all, or a base-to-novel run's base | novel
# (key in metrics.json, metric, criterion)
METRICS = (("top1", "top1", None), ("top5", "top5", None), ("mean_class_acc", "class_mean", None),
           *((f"{m}_{c}", m, c) for c in ("exact", "semantic") for m in ("shared", "novel", "hm")))
METRIC_NAMES = ("top1", "top5", "class_mean", "shared", "novel", "hm")
RESULTS_FILE = "results.parquet"


# what a row is, or where and how it ran, not what it trained: left out of the hash
NOT_TRAINING = ("seed", "label", "split", "device", "eval_batch_size", "log_tensorboard", "log")


def overrides_hash(config: dict) -> str:
    """12 hex digits naming what a method trained (its overrides, or a run's whole training
    config): the same settings give the same hash, whatever the seed, label or device."""
    kept = {k: v for k, v in config.items() if k not in NOT_TRAINING}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def metric_rows(metrics: dict, **context) -> list[dict]:
    """The rows of one evaluation: every score it has, with ``context`` (COLUMNS but the metric
    ones) on each row."""
    base = {k: context.get(k) for k in COLUMNS if k not in ("criterion", "metric", "value")}
    for k, src in (("target_dataset", "dataset"), ("target_split", "split"), ("label", "label"),
                   ("source_dataset", "source_dataset"), ("seed", "seed"),
                   ("in_dataset", "in_dataset"), ("classes", "class_part")):
        if base.get(k) is None:
            base[k] = metrics.get(src)
    base["classes"] = base["classes"] or "all"
    out = []
    for key, metric, criterion in METRICS:
        v = metrics.get(key)
        if v is not None:
            out.append({**base, "criterion": criterion, "metric": metric, "value": float(v)})
    return out


def results_frame(rows: list[dict], method_order: list[str] | None = None):
    """The rows as a DataFrame, ``method`` an ordered categorical in ``method_order`` (the
    recipe's) when given, so that every pivot and table keeps that order."""
    import pandas as pd
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if method_order is not None:
        order = list(dict.fromkeys([*method_order, *df["method"].dropna().unique()]))
        df["method"] = pd.Categorical(df["method"], categories=order, ordered=True)
    df["seed"] = df["seed"].astype("Int64")
    df["in_dataset"] = df["in_dataset"].astype("boolean")
    return df


def write_results(path: Path, df, root: Path) -> None:
    """``df`` as parquet at ``path``, written atomically below ``root`` (no link followed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xmic.files.atomic import write_bytes_atomic
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    write_bytes_atomic(Path(path), buf.getvalue(), root)


def read_results(path: Path):
    import pandas as pd
    return pd.read_parquet(path)

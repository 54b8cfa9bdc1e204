"""Accuracy metrics of docs/method.md §1 from class scores; numpy only.

Inputs: scores [S, C], true labels [S], and per criterion a shared-class mask [C].
Output: a dict of percentages in [0, 100]: ``top1``, ``top5`` (top-min(5, C)), ``mean_class_acc``
(over classes that have samples), and per criterion c: ``shared_c`` / ``novel_c`` (sample
accuracy over segments of shared / novel classes), ``shared_c_class_mean`` /
``novel_c_class_mean``, ``hm_c`` = 2sn/(s+n). A value is None when its set is empty. Ties in
scores go to the lower class index.
"""
from __future__ import annotations

import numpy as np


def ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """[S, k] class indices, best first; equal scores keep the lower index first."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def per_class_accuracy(correct: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """[C] accuracy (%) of each class over its samples; NaN for classes without samples."""
    n = np.bincount(labels, minlength=classes).astype(float)
    ok = np.bincount(labels, weights=correct.astype(float), minlength=classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 100.0 * ok / n, np.nan)


def _mean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)] if x.dtype.kind == "f" else x
    return float(np.mean(x)) if len(x) else None


def compute_metrics(scores: np.ndarray, labels: np.ndarray,
                    shared: dict[str, np.ndarray] | None = None) -> dict:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    s, c = scores.shape
    if s == 0:
        raise ValueError("no samples to score")
    top = ranked(scores, min(5, c))
    correct = top[:, 0] == labels
    per_class = per_class_accuracy(correct, labels, c)
    out = {"n": int(s), "classes": int(c), "top1": 100.0 * float(correct.mean()),
           "top5": 100.0 * float((top == labels[:, None]).any(axis=1).mean()),
           "mean_class_acc": _mean(per_class)}
    for crit, mask in (shared or {}).items():
        mask = np.asarray(mask, dtype=bool)
        in_shared = mask[labels]
        sh = 100.0 * float(correct[in_shared].mean()) if in_shared.any() else None
        nv = 100.0 * float(correct[~in_shared].mean()) if (~in_shared).any() else None
        out.update({f"shared_{crit}": sh, f"novel_{crit}": nv,
                    f"shared_{crit}_class_mean": _mean(per_class[mask]),
                    f"novel_{crit}_class_mean": _mean(per_class[~mask]),
                    f"hm_{crit}": harmonic_mean(sh, nv),
                    f"shared_{crit}_classes": int(mask.sum())})
    return out

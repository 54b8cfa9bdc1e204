"""Paired bootstrap of accuracy metrics over segments and seeds, vectorised.

Input: per method an ``Outcomes`` of one evaluation cell (the same target segments for every
method, in the same order): ``correct`` [K, S] (top-1 right, per seed K and segment S), the true
class ``labels`` [S] and, per class-split criterion, ``shared`` [S] (the segment's class is one
the source shares). Output: ``samples``: per method [B] values of the metric (percent) on B
resamples; the same resampled segments for every method (paired), the seeds of each method
drawn with replacement too. Segment draws are counts ``W`` [b, S] (S indices drawn, binned) made in chunks of
``CHUNK`` resamples, so memory is CHUNK x S whatever B; each metric is a matrix product or a
per-class sum (``np.add.reduceat`` over segments sorted by class). ``interval`` gives the
percentile interval; ``difference`` the interval of one method minus another.
Seeded (``seed``, and the cell's own key): the same inputs give the same numbers, and a
method's values do not change when methods are added to or left out of its cell.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CHUNK = 256
METRICS = ("top1", "class_mean", "shared", "novel", "hm")


@dataclass
class Outcomes:
    correct: np.ndarray   # [K, S] bool: top-1 right, per seed and segment
    labels: np.ndarray    # [S] int: true class
    shared: dict          # criterion -> [S] bool: the true class is shared with the source


def _per_seed(correct: np.ndarray, w: np.ndarray, metric: str, labels: np.ndarray,
              shared: np.ndarray | None) -> np.ndarray:
    """[b, K] metric of each seed on each resample (fractions); NaN where undefined."""
    c = correct.astype(np.float32).T                                     # [S, K]
    if metric == "top1":
        return (w @ c) / w.sum(1, keepdims=True)
    if metric in ("shared", "novel", "hm"):
        g = shared if metric != "novel" else ~shared
        if metric == "hm":
            a = _per_seed(correct, w, "shared", labels, shared)
            b = _per_seed(correct, w, "novel", labels, shared)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where((a + b) > 0, 2 * a * b / (a + b), 0.0)
        gw = w * g[None, :].astype(np.float32)                            # [b, S]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (gw @ c) / gw.sum(1, keepdims=True)
    if metric == "class_mean":
        order = np.argsort(labels, kind="stable")
        ls = labels[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        ws = w[:, order]                                                  # [b, S]
        den = np.add.reduceat(ws, starts, axis=1)                         # [b, C']
        out = np.empty((w.shape[0], c.shape[1]), np.float32)
        for k in range(c.shape[1]):
            num = np.add.reduceat(ws * c[order, k][None, :], starts, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, k] = np.nanmean(np.where(den > 0, num / den, np.nan), axis=1)
        return out
    raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")


def _resample_counts(rng, b: int, s: int) -> np.ndarray:
    """[b, S] float32: how often each segment is drawn in each of b resamples of S draws."""
    idx = rng.integers(0, s, (b, s), dtype=np.int32)
    flat = (idx + (np.arange(b, dtype=np.int64) * s)[:, None]).ravel()
    return np.bincount(flat, minlength=b * s).reshape(b, s).astype(np.float32)


def samples(outcomes: dict, metric: str = "top1", criterion: str = "exact", n: int = 1000,
            seed: int = 0, key: str = "") -> dict[str, np.ndarray]:
    """method -> [n] metric values (percent) on paired resamples of segments and seeds."""
    methods = list(outcomes)
    if not methods:
        return {}
    s = outcomes[methods[0]].labels.shape[0]
    cell = zlib.crc32(key.encode())
    rng = np.random.default_rng([seed, cell])  # the segments: alike for every method
    # each method's seeds from a stream of its own: its values do not depend on the others
    picks = {m: np.random.default_rng([seed, cell, zlib.crc32(m.encode())]) for m in methods}
    out = {m: np.empty(n, np.float64) for m in methods}
    for lo in range(0, n, CHUNK):
        b = min(CHUNK, n - lo)
        w = _resample_counts(rng, b, s)                                        # [b, S]
        for m in methods:
            o = outcomes[m]
            shared = o.shared.get(criterion) if metric in ("shared", "novel", "hm") else None
            if metric in ("shared", "novel", "hm") and shared is None:
                raise ValueError(f"no shared/novel split ({criterion}) recorded for {m}")
            per = _per_seed(o.correct, w, metric, o.labels, shared)            # [b, K]
            k = per.shape[1]
            pick = picks[m].integers(0, k, (b, k))                             # seeds, resampled
            out[m][lo:lo + b] = 100.0 * np.nanmean(np.take_along_axis(per, pick, 1), axis=1)
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval holding ``level`` of the resampled values."""
    a = (1.0 - level) / 2
    lo, hi = np.nanquantile(values, [a, 1.0 - a])
    return float(lo), float(hi)


def difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The interval of ``a - b`` over paired resamples."""
    return interval(a - b, level)

"""Which frames of a segment the released loaders use, which a cache stores, and where the trainer
finds them: the frame-sampling contract between extraction and training.

Inputs: a dataset's rule (``RULES``), a segment's annotation frames ``[start, stop)``, the number
of bins T (16) and a storage policy. Outputs: ``frames_to_store`` (sorted frame numbers to
encode), and ``bin_layout`` (per segment and bin: the stored rows that are that bin's training
candidates and the stored row of its evaluation frame), vectorised over segments.

The released rules, for a sampled range given as numpy ``linspace(lo, hi, T, endpoint=False)``
with its ``step`` (positions are ``int`` of floats, as released):
- EPIC-100 (``Dassl.pytorch/dassl/data/data_manager.py``, ``_uniform_frame_generator``): the
  segment's frames are ``[start, stop)``; ``linspace(start, stop - 1, T)``, so step = (n − 1)/T.
- Ego4D (``datasets/ego4d_helper.py``, ``start_end_clip`` and ``get_item``): over the action
  clip's L = stop − start frames, ``a = max(0, L//2 − 2·(L//8))``, ``b = min(L//2 + 2·(L//8), L)``
  (the central 4 s of the 8-s FHO clip); ``linspace(a, b, T)``, so step = (b − a)/T.
- EGTEA (``datasets/egtea.py``) and generic CSV datasets: as EPIC.
Bin i: evaluation frame ``int(x_i + step/2)``; training frame ``int(x_i) + r``, r uniform in
``[0, max(1, int(step)))``. A cache may store every frame (``all``) or, per bin, the evaluation
frame plus ``per_bin`` training candidates spread over the bin's reachable frames (``per_bin``);
either way every evaluation frame equals the released loader's and every stored row is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmic.cache.paths import CacheError

SAMPLING_VERSION = 2  # 1: frames [start, stop] with step (n-1)/T for every dataset, rows as frames


@dataclass(frozen=True)
class Rule:
    name: str
    recorded: str   # the name fingerprints record (that of the dataset it was first written for)
    window: str     # what the sampled range is, in words (recorded in the fingerprint)


RULES = {r.name: r for r in (
    Rule("segment", "epic", "segment [start, stop), step (n-1)/T"),
    Rule("central-window", "ego4d", "central 4 s of the 8-s action clip, step n/T"),
)}
_BY_RECORD = {r.recorded: r.name for r in RULES.values()}


def rule_name(rule: str) -> str:
    """A rule's name from its name or from what a fingerprint recorded (``epic`` -> segment)."""
    name = _BY_RECORD.get(rule, rule)
    if name not in RULES:
        raise CacheError(f"unknown sampling rule {rule!r}; known: {', '.join(RULES)}")
    return name


def rule_of(dataset: str) -> str:
    """The sampling rule a dataset's record names (a dataset without a record: the segment's)."""
    from xmic.cache.datasets import DATASETS
    return DATASETS[dataset].window if dataset in DATASETS else "segment"


def sampling_fingerprint(dataset: str, policy: str, per_bin: int, bins: int) -> dict:
    rule = RULES[rule_of(dataset)]
    return {"policy": policy, "per_bin": per_bin, "bins": bins, "rule": rule.recorded,
            "window": rule.window, "version": SAMPLING_VERSION}


def _range(rule: str, start: np.ndarray, stop: np.ndarray):
    """(lo, hi, end, base), vectorised: the linspace bounds, the end (exclusive) of the frames
    the rule reads, all in positions, and the frame number of position 0. At least one frame."""
    start, stop = np.asarray(start, np.int64), np.asarray(stop, np.int64)
    if rule_name(rule) == "central-window":  # positions inside the action clip's frames
        n = stop - start
        a = np.maximum(0, n // 2 - (n // 8) * 2)
        b = np.minimum(n // 2 + (n // 8) * 2, n)
        return a, b, np.maximum(b, a + 1), start
    hi = np.maximum(stop - 1, start)  # the segment: positions are frame numbers
    return start, hi, hi + 1, np.zeros_like(start)


def frame_span(rule: str, start, stop) -> tuple[np.ndarray, np.ndarray]:
    """Per segment, the first frame number the rule can read and the end (exclusive):
    every frame any sampling policy stores lies in ``[first, end)`` (the coverage check)."""
    lo, _, end, base = _range(rule, np.atleast_1d(start), np.atleast_1d(stop))
    return lo + base, end + base


def released_positions(rule: str, start, stop, bins: int = 16):
    """Per segment and bin: (evaluation frame [S, T], first training frame [S, T], training
    width [S]), frame numbers exactly as the released loader computes them."""
    lo, hi, end, base = _range(rule, np.atleast_1d(start), np.atleast_1d(stop))
    x, step = np.linspace(lo.astype(np.float64), hi.astype(np.float64), bins, endpoint=False,
                          retstep=True, axis=1)                       # [S, T], [S]
    step = np.atleast_1d(step)
    ev = np.trunc(x + step[:, None] / 2).astype(np.int64)
    first = np.trunc(x).astype(np.int64)
    width = np.maximum(1, np.trunc(step).astype(np.int64))
    ev = np.minimum(ev, (end - 1)[:, None])
    return ev + base[:, None], first + base[:, None], width


def frames_to_store(rule: str, start: int, stop: int, policy: str = "per_bin", per_bin: int = 4,
                    bins: int = 16) -> list[int]:
    """Sorted frame numbers to encode for a segment ``[start, stop)``."""
    if stop < start:
        raise ValueError(f"segment stops (frame {stop}) before it starts (frame {start})")
    ev, first, width = released_positions(rule, [start], [stop], bins)
    ev, first, w = ev[0], first[0], int(width[0])
    if policy == "all":
        lo, _, end, base = _range(rule, np.array([start]), np.array([stop]))
        return list(range(int(lo[0] + base[0]), int(end[0] + base[0])))
    if policy != "per_bin":
        raise ValueError(f"unknown sampling policy {policy!r}; use all or per_bin")
    out = set(ev.tolist())
    for e, f in zip(ev.tolist(), first.tolist()):
        if w <= per_bin:
            out.update(range(f, f + w))
            continue
        cand = [f + (k * 2 + 1) * w // (2 * per_bin) for k in range(per_bin)]
        if f <= e < f + w and e not in cand:  # the evaluation frame doubles as a candidate
            cand[min(range(per_bin), key=lambda k: abs(cand[k] - e))] = e
        out.update(cand)
    return sorted(out)


@dataclass(frozen=True)
class BinLayout:
    """Rows (inside each segment) that serve each bin: training candidates are the rows
    ``begin .. begin + count - 1``; evaluation takes row ``eval``. Arrays [S, T]."""
    begin: np.ndarray
    count: np.ndarray
    eval: np.ndarray


def bin_layout(rule: str, start: np.ndarray, stop: np.ndarray, frames: np.ndarray,
               offsets: np.ndarray, bins: int, where: str, segment_ids) -> BinLayout:
    """The layout of S segments whose stored frame numbers are ``frames[offsets[s]:offsets[s+1]]``
    (sorted per segment). A segment whose stored rows lack a bin's evaluation frame or training
    candidates is refused, naming it (a cache stored for another T, or by another rule)."""
    ev, first, width = released_positions(rule, start, stop, bins)        # [S, T]
    s = len(offsets) - 1
    seg = np.repeat(np.arange(s, dtype=np.int64), np.diff(offsets))
    span = int(max(frames.max(initial=0), ev.max(initial=0), (first + width[:, None]).max(
        initial=0))) + 2
    keys = seg * span + frames.astype(np.int64)                            # sorted overall
    row0 = np.arange(s, dtype=np.int64)[:, None] * span
    b = np.searchsorted(keys, row0 + first, "left")
    e = np.searchsorted(keys, row0 + first + width[:, None], "left")
    r = np.searchsorted(keys, row0 + ev, "left")
    hit = (r < len(keys)) & (keys[np.minimum(r, len(keys) - 1)] == row0 + ev)
    bad = np.flatnonzero(~hit.all(1) | ((e - b) < 1).any(1))
    if len(bad):
        ids = [segment_ids[i] for i in bad[:3]]
        raise CacheError(f"{where}: {len(bad)} segment(s) (e.g. {ids}) do not hold the frames the "
                         f"released loader uses for T={bins} bins (rule {rule}); re-extract with "
                         "the trainer's frames as bins, or with sampling=all")
    base = offsets[:-1, None]
    return BinLayout(b - base, e - b, r - base)


def rows_layout(rule: str, counts: np.ndarray, bins: int) -> BinLayout:
    """Layout when every row of a segment is one frame of its released range, numbered from 0
    (imported X-MIC features hold every frame; caches of sampling version 1 are read this way)."""
    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    frames = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
    return bin_layout(rule, np.zeros_like(counts), counts, frames, offsets, bins,
                      "rows", list(range(len(counts))))

"""Load views of a split into memory: one contiguous array per view plus CSR offsets.

Inputs: a ``Cache``, view names, a split. Output: ``SplitData`` with the index rows of the
segments loaded (status ok and committed in every requested view, in plan order), and per view
``features`` [N, D] (the cache dtype) with ``offsets`` [S + 1] so that segment i owns rows
``offsets[i]:offsets[i+1]``. Each shard's data is read once, with no per-segment Python loop;
each data file's size is checked against its marker first (a missing or truncated file is an
error, never zeros).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xmic.cache.backends import read_array
from xmic.cache.index import view_columns
from xmic.cache.layout import CacheError, inside, shard_dir
from xmic.cache.store import Cache


@dataclass
class ViewArray:
    features: np.ndarray  # [N, D], N = total frames of the loaded segments
    offsets: np.ndarray   # [S + 1] int64 row offsets into features


@dataclass
class SplitData:
    segments: pa.Table                 # S index rows, plan order
    views: dict[str, ViewArray]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> segment count

    @property
    def segment_ids(self) -> list[str]:
        return self.segments["segment_id"].to_pylist()


def check_data_files(cache: Cache, view: str, shard: str, marker: dict) -> Path:
    """Data path of a committed shard after checking every file's size against the marker."""
    sdir = shard_dir(cache.root, view, shard)
    for rel, size in marker.get("files", {}).items():
        p = inside(sdir, rel)
        if not p.exists():
            raise CacheError(f"view {view}, shard {shard}: data file {rel} is missing; "
                             "the shard is damaged: delete its folder and re-run it")
        if p.stat().st_size != size:
            raise CacheError(f"view {view}, shard {shard}: data file {rel} has "
                             f"{p.stat().st_size} bytes, its marker says {size} (truncated?)")
    return inside(sdir, marker["data"])


def gather_rows(arr: np.ndarray, starts: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """out[...] = concat(arr[s:s+c] for s, c in zip(starts, counts)), vectorised."""
    total = int(counts.sum())
    if total == 0:
        return
    if len(starts) and starts[0] == 0 and total == arr.shape[0] and \
            np.all(starts[1:] == np.cumsum(counts)[:-1]):
        out[:] = arr  # the whole shard in order: one copy
        return
    seg_base = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    out[:] = arr[seg_base + np.arange(total)]


def load_split(cache: Cache, views: list[str], split: str) -> SplitData:
    """Load ``views`` of ``split``; segments not ok in all of them are skipped and counted."""
    if not views:
        raise CacheError("load_split needs at least one view")
    idx = cache.index()
    if split not in cache.splits():
        raise CacheError(f"{cache.root}: no split {split!r} (splits: {cache.splits()})")
    records = {v: cache.view(v) for v in views}
    idx = idx.filter(pc.equal(idx["split"], split))
    ok = pc.equal(idx["status"], "ok").to_numpy(zero_copy_only=False)
    status = np.array(idx["status"].to_pylist(), dtype=object)
    skipped = {"failed": int((status == "failed").sum()), "pending": int((status == "pending").sum())}
    for v in views:
        _, _, ccol = view_columns(v)
        if ccol not in idx.column_names:
            raise CacheError(f"view {v!r} has no committed shard; extract or import it first")
        has = idx[ccol].is_valid().to_numpy(zero_copy_only=False)
        missing = ok & ~has
        if missing.any():
            skipped[f"not in {v}"] = int(missing.sum())
        ok &= has
    sel = idx.filter(pa.array(ok))
    out = {}
    for v in views:
        scol, ocol, ccol = view_columns(v)
        shards = np.array(sel[scol].to_pylist(), dtype=object)
        starts = sel[ocol].to_numpy(zero_copy_only=False).astype(np.int64)
        counts = sel[ccol].to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        dim = records[v]["dim"]
        feats = np.empty((int(offsets[-1]), dim), dtype=records[v]["dtype"])  # [N, D]
        # plan order keeps each shard's segments together: walk runs of equal shard names
        bounds = np.flatnonzero(shards[1:] != shards[:-1]) + 1 if len(shards) else np.array([], int)
        for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(shards)]])):
            if lo == hi:
                continue
            shard = shards[lo]
            marker = cache.marker(v, shard)
            path = check_data_files(cache, v, shard, marker)
            arr = read_array(marker["backend"], path)
            if arr.shape != (marker["rows"], dim) or str(arr.dtype) != records[v]["dtype"]:
                raise CacheError(f"view {v}, shard {shard}: data is {arr.shape} {arr.dtype}, "
                                 f"marker says ({marker['rows']}, {dim}) {records[v]['dtype']}")
            ends = starts[lo:hi] + counts[lo:hi]
            if len(ends) and (starts[lo:hi].min() < 0 or ends.max() > arr.shape[0]):
                bad = lo + int(np.argmax((ends > arr.shape[0]) | (starts[lo:hi] < 0)))
                raise CacheError(f"view {v}, shard {shard}: index row of segment "
                                 f"{sel['segment_id'][bad].as_py()} points past the shard's "
                                 f"{arr.shape[0]} rows; delete index.parquet to rebuild it and "
                                 "run `xmic cache verify`")
            gather_rows(arr, starts[lo:hi], counts[lo:hi], feats[offsets[lo]:offsets[hi]])
        out[v] = ViewArray(feats, offsets)
    return SplitData(sel, out, {k: n for k, n in skipped.items() if n})

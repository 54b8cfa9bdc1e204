"""Load views of a split into memory: one contiguous array per view plus CSR offsets.

Inputs: a ``Cache``, view names, a split. Output: ``SplitData`` with the index rows of the
segments loaded (status ok and committed in every requested view, in plan order), and per view
``features`` [N, D] (the cache dtype) with ``offsets`` [S + 1] so that segment i owns rows
``offsets[i]:offsets[i+1]``. Each shard's data is read once, with no per-segment Python loop;
each data file's size is checked against its marker first (a missing or truncated file is an
error, never zeros).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xmic.cache.backends import read_array, read_into
from xmic.cache.index import view_columns
from xmic.cache.paths import CacheError, inside, shard_dir
from xmic.cache.cache_folder import Cache


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
    sdir = shard_dir(cache.root, view, shard)  # resolved once; names below are checked lexically
    for rel, size in marker.get("files", {}).items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise CacheError(f"view {view}, shard {shard}: marker file name {rel!r} points outside "
                             "the cache; the marker is corrupt or hostile")
        p = sdir / rel
        try:
            actual = os.stat(p).st_size
        except FileNotFoundError:
            raise CacheError(f"view {view}, shard {shard}: data file {rel} is missing; "
                             "the shard is damaged: delete its folder and re-run it") from None
        if actual != size:
            raise CacheError(f"view {view}, shard {shard}: data file {rel} has {actual} bytes, "
                             f"its marker says {size} (truncated?)")
    return inside(sdir, marker["data"])


def whole_in_order(starts: np.ndarray, counts: np.ndarray, rows: int) -> bool:
    """The selected segments are exactly the shard's rows 0..rows, in order."""
    return (len(starts) > 0 and starts[0] == 0 and int(counts.sum()) == rows
            and bool(np.all(starts[1:] == np.cumsum(counts)[:-1])))


def gather_rows(arr: np.ndarray, starts: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """out[...] = concat(arr[s:s+c] for s, c in zip(starts, counts)), vectorised."""
    total = int(counts.sum())
    if total == 0:
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
            if marker["dim"] != dim or marker["dtype"] != records[v]["dtype"]:
                raise CacheError(f"view {v}, shard {shard}: marker says width {marker['dim']} "
                                 f"{marker['dtype']}, the view holds {dim} {records[v]['dtype']}")
            st, ct, dest = starts[lo:hi], counts[lo:hi], feats[offsets[lo]:offsets[hi]]
            ends = st + ct
            if st.min() < 0 or ends.max() > marker["rows"]:
                bad = lo + int(np.argmax((ends > marker["rows"]) | (st < 0)))
                raise CacheError(f"view {v}, shard {shard}: index row of segment "
                                 f"{sel['segment_id'][bad].as_py()} points past the shard's "
                                 f"{marker['rows']} rows; delete index.parquet to rebuild it and "
                                 "run `xmic cache verify`")
            if whole_in_order(st, ct, marker["rows"]):
                read_into(marker["backend"], path, dest)  # one read, no temporary
            else:
                gather_rows(read_array(marker["backend"], path), st, ct, dest)
        out[v] = ViewArray(feats, offsets)
    return SplitData(sel, out, {k: n for k, n in skipped.items() if n})

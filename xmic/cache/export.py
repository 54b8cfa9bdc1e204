"""``export``: a cache's embeddings for frameworks that do not read xmic caches.

Inputs: a ``Cache``, a new (or partly exported) output folder, a format, the splits and views.
Outputs, streamed shard by shard (memory: one shard of every view), each file written whole
(temporary name, rename) so that an interrupted export resumes at the next shard:
- ``parquet``: ``OUT/SPLIT/SHARD.parquet``, one row per segment: the plan's columns (ids, split,
  video, recording, frame range, seconds, fps, labels), ``status`` (ok | failed | pending),
  ``frame_indices`` and per view a column ``VIEW`` of list<fixed_size_list<float32, D>> (the
  segment's frames; null when not ok). ``datasets.load_dataset("parquet", data_files=...)``,
  pyarrow and pandas read it as it is.
- ``npy``: as video_features lays out one file per clip and key: ``OUT/VIEW/SEGMENT_VIEW.npy``
  [n, D] float32 and ``OUT/VIEW/SEGMENT_frame_indices.npy`` [n] per ok segment, plus
  ``OUT/segments.csv`` (the plan's columns and status) for the labels.
``OUT/export.json`` records what was exported; ``OUT/.done/SHARD`` marks a shard exported from
every view (one a view has not committed yet is written with its rows pending, and again by the
next export into the same folder).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xmic.cache.backends import read_array
from xmic.cache.cache_folder import Cache
from xmic.cache.index import SEGMENT_FIELDS
from xmic.cache.paths import CacheError, check_cache_name
from xmic.cache.reader import check_data_files
from xmic.files.atomic import (guard, make_dirs, write_bytes_atomic, write_json_atomic,
                               write_new)

FORMATS = ("parquet", "npy")
RECORD = "export.json"
DONE = ".done"


def _record(cache: Cache, fmt: str, splits: list[str], views: list[str]) -> dict:
    return {"format": "xmic-export", "version": 1, "export_format": fmt,
            "dataset": cache.dataset, "splits": splits, "views": views,
            "fingerprints": {v: cache.view(v)["fingerprint_id"] for v in views}}


def _start(out: Path, record: dict) -> None:
    """A new folder, or one this same export began (resumed); anything else is refused."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CacheError(f"{out}: not a folder; export into a new folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            same = json.loads((out / RECORD).read_text()) == record
        except (OSError, ValueError):
            same = False
        if not same:
            raise CacheError(f"{out}: holds other files than this export; export into a new "
                             "folder (or the folder of the same export, to resume it)")
    make_dirs(out / DONE, out.parent)
    write_json_atomic(out / RECORD, record, root=out)


def _shard_views(cache: Cache, shard: str, committed: dict) -> dict:
    """view -> (array [rows, D] float32, rows table) of a shard in each view that committed it
    (``committed``: view -> its committed shards, listed once)."""
    got = {}
    for v, done in committed.items():
        if shard not in done:
            continue
        m = cache.marker(v, shard)
        arr = read_array(m["backend"], check_data_files(cache, v, shard, m))
        got[v] = (np.asarray(arr, dtype=np.float32), cache.shard_rows(v, shard))
    return got


def _rows(rows: pa.Table):
    return zip(*(rows[c].to_pylist() for c in ("segment_id", "offset", "count", "frame_indices",
                                                "status")))


def _frames_column(cells: list, dim: int) -> pa.Array:
    """[S] cells of [n, D] arrays (None: null) -> list<fixed_size_list<float32, D>>, built
    from one flat buffer (no Python list per frame)."""
    counts = np.array([0 if c is None else len(c) for c in cells], np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    flat = (np.concatenate([c for c in cells if c is not None]) if counts.sum()
            else np.zeros((0, dim), np.float32))
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim)
    return pa.ListArray.from_arrays(pa.array(offsets), values,
                                    mask=pa.array([c is None for c in cells]))


def _parquet_table(plan: pa.Table, got: dict, views: list[str], dims: dict) -> pa.Table:
    """One row per planned segment of the shard: plan columns, status, frames, views."""
    ids = plan["segment_id"].to_pylist()
    where = {sid: i for i, sid in enumerate(ids)}
    failed, frames = [False] * len(ids), [None] * len(ids)
    cells = {v: [None] * len(ids) for v in views}
    for v, (arr, rows) in got.items():
        for sid, off, cnt, fi, st in _rows(rows):
            i = where[sid]
            if st == "ok":
                cells[v][i] = arr[off:off + cnt]  # [n, D]
                frames[i] = fi if frames[i] is None else frames[i]
            else:
                failed[i] = True
    status = ["failed" if failed[i] else
              "ok" if all(cells[v][i] is not None for v in views) else "pending"
              for i in range(len(ids))]
    out = {f.name: plan[f.name] for f in SEGMENT_FIELDS}
    out["status"] = pa.array(status, pa.string())
    out["frame_indices"] = pa.array(frames, pa.list_(pa.int32()))
    for v in views:
        out[v] = _frames_column(cells[v], dims[v])
    return pa.table(out)


def _write_npy(out: Path, plan: pa.Table, got: dict) -> None:
    for v, (arr, rows) in got.items():
        folder = make_dirs(out / check_cache_name("view", v), out)
        for sid, off, cnt, fi, st in _rows(rows):
            if st != "ok":
                continue
            stem = check_cache_name("segment id", sid)
            for key, a in ((v, arr[off:off + cnt]), ("frame_indices", np.asarray(fi, np.int32))):
                buf = io.BytesIO()
                np.save(buf, a, allow_pickle=False)
                write_bytes_atomic(folder / f"{stem}_{key}.npy", buf.getvalue(), root=out)


def _segments_csv(cache: Cache, splits: list[str]) -> bytes:
    idx = cache.index()
    names = [f.name for f in SEGMENT_FIELDS] + ["status"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(names)
    keep = set(splits)
    cols = [idx[n].to_pylist() for n in names]
    for row in zip(*cols):
        if row[names.index("split")] in keep:
            w.writerow(row)
    return buf.getvalue().encode()


def export(cache: Cache, out: str | Path, fmt: str, splits: list[str] | None = None,
           views: list[str] | None = None, progress=None) -> dict:
    """Export ``views`` (default all) of ``splits`` (default all); returns counts."""
    if fmt not in FORMATS:
        raise CacheError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    out = Path(out).absolute()
    if cache.holds(out):
        raise CacheError(f"cannot export {cache.root} into {out}: the output lies inside it")
    splits = list(splits or cache.splits())
    views = list(views or sorted(cache.views()))
    for s in splits:
        if s not in cache.splits():
            raise CacheError(f"{cache.root}: no split {s!r}; it has {cache.splits()}")
    for v in views:
        cache.view(v)  # refuses an unknown view, naming the ones there are
    _start(out, _record(cache, fmt, splits, views))
    dims = {v: cache.view(v)["dim"] for v in views}
    committed = {v: cache.committed(v) for v in views}  # one listing per view
    done_now = skipped = partial = 0
    for split in splits:
        for shard in cache.shards(split):
            marker = guard(out / DONE / check_cache_name("shard", shard), out)
            if marker.exists():
                skipped += 1
                continue
            got = _shard_views(cache, shard, committed)
            plan = cache.shard_segments(shard)
            if fmt == "parquet":
                folder = make_dirs(out / check_cache_name("split", split), out)
                buf = io.BytesIO()
                pq.write_table(_parquet_table(plan, got, views, dims), buf)
                write_bytes_atomic(folder / f"{shard}.parquet", buf.getvalue(), root=out)
            else:
                _write_npy(out, plan, got)
            if len(got) == len(views):  # a shard a view has not committed yet is exported
                write_new(marker, b"", out, sync=False)  # again by the next run
            else:
                partial += 1
            done_now += 1
            if progress:
                progress(shard)
    if fmt == "npy":
        write_bytes_atomic(out / "segments.csv", _segments_csv(cache, splits), root=out)
    return {"shards": done_now, "skipped": skipped, "partial": partial, "splits": splits,
            "views": views}

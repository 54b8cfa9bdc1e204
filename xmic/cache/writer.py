"""``ShardWriter``: the only way data enters a cache; one writer per (view, shard).

Inputs: a ``Cache``, a view name, width D and fingerprint, a shard name from the plan; then per
segment of the shard either ``add(segment_id, frames [n, D], frame_indices, fallbacks)`` or
``fail(segment_id, error)``; ``still_valid`` (optional) says at commit why the shard must not be
committed (its inputs changed meanwhile). Output on ``commit()``: ``views/VIEW/SHARD/`` holding the data file,
``rows.parquet`` and ``marker.json`` (rows, checksum, file sizes, fingerprint, config, timing,
and for a crop view the rows whose crop fell back to the full frame: ``crop_fallbacks``).
Everything is written in ``views/VIEW/.tmp/`` and fsynced, the marker last, then the folder is
renamed into place: readers see the whole shard or none of it, and of two writers racing on the
same shard exactly one commits. A writer that raises leaves ``SHARD.failed.json`` with the error.
While it works, a claim in ``views/VIEW/.running/`` says the shard is running (``claims.py``).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xmic.cache import fingerprint as fpmod
from xmic.cache.claims import shard_claim
from xmic.files.claims import Claim
from xmic.cache.backends import array_checksum, write_array
from xmic.cache.index import rows_table
from xmic.files.atomic import (append_line, caused_by, commit_dir, make_dirs, remove_file,
                               remove_tree, sha256_file, tmp_name, write_json_atomic, write_new)
from xmic.cache.paths import (DATA, MARKER, PROGRESS, ROWS, TMP, CacheError, failed_path,
                              shard_dir, stale_tmp, view_dir, attempts_log, count_attempts)
from xmic.cache.cache_folder import Cache
from xmic.config import config_to_dict

FP16_MAX = float(np.finfo(np.float16).max)


def data_files(data_path: Path) -> dict[str, int]:
    """Relative path -> size of every file of a shard's data (a file, or a zarr folder)."""
    base = data_path.parent
    if data_path.is_file():
        return {data_path.name: data_path.stat().st_size}
    out = {}
    for dirpath, _, files in os.walk(data_path):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(base))] = p.stat().st_size
    return dict(sorted(out.items()))


NONFINITE_CHUNK = 8192  # rows tested at a time (12 MB at D = 512): the test holds no copy of a bank


def nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Bool [n]: rows holding NaN or Inf. float16 is tested on its bits (exponent all ones).
    Tested in chunks of rows, so testing a whole bank costs no copy of it."""
    out = np.empty(len(a), dtype=bool)
    for lo in range(0, len(a), NONFINITE_CHUNK):
        c = a[lo:lo + NONFINITE_CHUNK]
        out[lo:lo + len(c)] = (((c.view(np.uint16) & 0x7C00) == 0x7C00).any(axis=1)
                               if c.dtype == np.float16 else ~np.isfinite(c).all(axis=1))
    return out


def to_storage(frames: np.ndarray, dtype: str, dim: int, where: str) -> np.ndarray:
    """Check one segment's frames [n, D] and cast them to the cache dtype (a new array)."""
    a = np.asarray(frames)
    if a.ndim != 2 or a.shape[1] != dim:
        raise CacheError(f"{where}: expected an array [frames, {dim}], got shape {a.shape}")
    if a.shape[0] == 0:
        raise CacheError(f"{where}: no frames")
    if not np.issubdtype(a.dtype, np.floating):
        raise CacheError(f"{where}: expected floating-point embeddings, got dtype {a.dtype}")
    with np.errstate(over="ignore"):  # overflow shows up as Inf below and is reported there
        out = np.array(a, dtype=dtype, order="C")  # always a copy: callers may reuse their buffer
    bad = nonfinite_rows(out)
    if bad.any():
        src_bad = ~np.isfinite(a).all(axis=1)
        if src_bad.any():
            raise CacheError(f"{where}: {int(src_bad.sum())} frame(s) hold NaN or Inf")
        peak = float(np.abs(a).max())
        raise CacheError(f"{where}: values up to {peak:.4g} overflow float16 (max {FP16_MAX:.0f}); "
                         "use a float32 cache (--set dtype=float32)")
    return out


def disk_full(e: BaseException | None) -> bool:
    """True when ``e`` (or what caused it: zarr and h5py wrap OS errors) is ENOSPC."""
    return caused_by(e, errno.ENOSPC, "No space left on device")


class ShardWriter:
    def __init__(self, cache: Cache, view: str, shard: str, dim: int, fingerprint: dict,
                 producer_config: dict | None = None, provenance: dict | None = None,
                 still_valid=None):
        self.cache, self.view, self.shard, self.dim = cache, view, shard, int(dim)
        self.fingerprint = fingerprint
        self.producer_config = producer_config or {}
        self.provenance = provenance or {}
        self.still_valid = still_valid  # () -> None, or why the shard must not be committed
        plan = cache.shard_segments(shard)
        if plan.num_rows == 0:
            raise CacheError(f"shard {shard!r} is not in the plan of {cache.root}")
        self.segment_ids: list[str] = plan["segment_id"].to_pylist()
        self._pos = {s: i for i, s in enumerate(self.segment_ids)}
        self._results: dict[str, tuple] = {}
        self._fallbacks: dict[str, list[int]] | None = None  # segment -> frames, crop views
        self.final = shard_dir(cache.root, view, shard)
        self.tmp_root = view_dir(cache.root, view) / TMP
        self.tmp: Path | None = None
        self.claim: Claim | None = None
        self.attempt = 0
        self.started = None

    def start(self) -> "ShardWriter":
        """The writer's own files: the view's record (width and fingerprint checked), stale
        temporary folders of dead writers removed, the attempt logged, the running claim.
        Called by ``with``, or by the first ``add``/``fail``/``commit``."""
        if self.started is None:
            root = self.cache.root
            self.cache.register_view(self.view, self.dim, self.fingerprint)
            make_dirs(self.tmp_root, root)
            for p in stale_tmp(self.tmp_root, self.shard):
                remove_tree(p, root)
            self.attempt = self._log_attempt()
            self.claim = shard_claim(root, self.view, self.shard)  # `running` until commit or failure
            self.started = time.time()
        return self

    def _log_attempt(self) -> int:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {socket.gethostname()} {os.getpid()}\n"
        append_line(attempts_log(self.cache.root, self.view, self.shard), line, self.cache.root)
        return count_attempts(self.cache.root, self.view, self.shard)

    def is_done(self) -> bool:
        return (self.final / MARKER).exists()

    def _slot(self, segment_id: str) -> int:
        if segment_id not in self._pos:
            raise CacheError(f"segment {segment_id!r} is not planned in shard {self.shard}")
        if segment_id in self._results:
            raise CacheError(f"segment {segment_id!r} given twice to shard {self.shard}")
        return self._pos[segment_id]

    def add(self, segment_id: str, frames: np.ndarray, frame_indices, fallbacks=None) -> None:
        """Store one segment's frames [n, D]; ``frame_indices`` [n] are the video frames encoded;
        ``fallbacks``, for a crop view, the frames whose crop fell back to the full frame."""
        self.start()
        self._slot(segment_id)
        where = f"view {self.view}, segment {segment_id}"
        arr = to_storage(frames, self.cache.config.dtype, self.dim, where)
        fi = [int(x) for x in frame_indices]
        if len(fi) != arr.shape[0]:
            raise CacheError(f"{where}: {arr.shape[0]} frames but {len(fi)} frame indices")
        self._results[segment_id] = ("ok", arr, fi, None)
        if fallbacks is not None:
            self._fallbacks = self._fallbacks if self._fallbacks is not None else {}
            if len(fallbacks):
                self._fallbacks[segment_id] = sorted(int(f) for f in fallbacks)

    def fail(self, segment_id: str, error: str) -> None:
        """Record that a segment could not be produced (no data is written for it)."""
        self.start()
        self._slot(segment_id)
        self._results[segment_id] = ("failed", None, [], str(error) or "unknown error")

    def commit(self, extra_stats: dict | None = None) -> bool:
        """Write and commit the shard; True if this writer's commit won, False if another
        writer had already committed the same shard. ``extra_stats`` go into the marker."""
        self.start()
        missing = [s for s in self.segment_ids if s not in self._results]
        if missing:
            raise CacheError(f"shard {self.shard} of view {self.view}: {len(missing)} planned "
                             f"segment(s) neither added nor failed, e.g. {missing[:3]}")
        if self.is_done():
            self.claim.release()
            return False
        why = self.still_valid() if self.still_valid is not None else None
        if why:  # e.g. the split was planned again from other inputs while this shard encoded
            raise CacheError(f"shard {self.shard} of view {self.view} is not committed: {why}")
        arrays, offsets, counts, fis, sts, errs = [], [], [], [], [], []
        row = 0
        for sid in self.segment_ids:
            st, arr, fi, err = self._results[sid]
            n = 0 if arr is None else arr.shape[0]
            offsets.append(row)
            counts.append(n)
            fis.append(fi)
            sts.append(st)
            errs.append(err)
            if arr is not None:
                arrays.append(arr)
            row += n
        data = (np.concatenate(arrays) if arrays
                else np.zeros((0, self.dim), dtype=self.cache.config.dtype))  # [rows, D]
        t_write = time.time()
        try:
            marker = self._write_tmp(data, row, offsets, counts, fis, sts, errs, extra_stats, t_write)
            won = commit_dir(self.tmp, self.final, self.cache.root)
        except BaseException as e:
            if self.tmp is not None:  # free the space of the half-written shard at once
                with contextlib.suppress(OSError):
                    remove_tree(self.tmp, self.cache.root)
                self.tmp = None
            if disk_full(e):
                raise CacheError(f"{self.final}: the disk is full (no space left on device) while "
                                 f"writing shard {self.shard} of view {self.view}; committed "
                                 "shards are intact: free space, then run the same command "
                                 "again") from None
            raise
        self.tmp = None
        self.claim.release()
        if won:
            self._log_progress(marker)
            remove_file(failed_path(self.cache.root, self.view, self.shard), self.cache.root)
        return won

    def _write_tmp(self, data, row, offsets, counts, fis, sts, errs, extra_stats, t_write) -> dict:
        """Data, rows and marker (last) into a new temporary folder; returns the marker."""
        root = self.cache.root
        self.tmp = self.tmp_root / tmp_name(self.shard)
        make_dirs(self.tmp, root)
        cfg = self.cache.config
        data_path = write_array(cfg.backend, self.tmp, data, cfg.chunk_rows, cfg.compression)
        sink = pa.BufferOutputStream()  # built in memory, written with plain I/O (ENOSPC-safe)
        pq.write_table(rows_table(self.segment_ids, offsets, counts, fis, sts, errs), sink)
        write_new(self.tmp / ROWS, memoryview(sink.getvalue()), root)
        seconds = time.time() - self.started
        marker = {
            "format": "xmic-shard", "version": 1, "view": self.view, "shard": self.shard,
            "backend": cfg.backend, "data": DATA[cfg.backend], "rows": int(row), "dim": self.dim,
            "dtype": cfg.dtype, "segments": len(self.segment_ids),
            "ok": sts.count("ok"), "failed": sts.count("failed"),
            "checksum": array_checksum(data), "files": data_files(data_path),
            "rows_sha256": sha256_file(self.tmp / ROWS),
            "fingerprint": self.fingerprint,
            "fingerprint_id": fpmod.fingerprint_id(self.fingerprint),
            "config": {"cache": config_to_dict(cfg), "producer": self.producer_config},
            "provenance": self.provenance,
            **({} if self._fallbacks is None else {"crop_fallbacks": {
                "rows": sum(len(f) for f in self._fallbacks.values()),
                "segments": self._fallbacks}}),
            "stats": {"attempt": self.attempt, "host": socket.gethostname(), "pid": os.getpid(),
                      "seconds": round(seconds, 3), "frames": int(row),
                      "frames_per_s": round(row / seconds, 1) if seconds > 0 else None,
                      "write_s": round(time.time() - t_write, 3),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      **(extra_stats or {})},
        }
        write_json_atomic(self.tmp / MARKER, marker, root)
        return marker

    def _log_progress(self, marker: dict) -> None:
        """One line per commit in ``views/VIEW/.progress.jsonl``: status reads this file instead
        of every marker. Best effort: the marker stays the truth, and is read when a line is
        missing or broken."""
        st = marker["stats"]
        try:
            stamp = os.stat(self.final / MARKER).st_mtime_ns  # a later redo makes the line stale
        except OSError:
            stamp = None
        line = json.dumps({"shard": self.shard, "rows": marker["rows"], "failed": marker["failed"],
                           "attempt": st["attempt"], "seconds": st["seconds"],
                           "finished": st["finished"], "marker_mtime_ns": stamp}) + "\n"
        try:  # O_APPEND: whole lines on a local file system
            append_line(view_dir(self.cache.root, self.view) / PROGRESS, line, self.cache.root)
        except OSError:
            pass

    def record_failure(self, exc: BaseException) -> None:
        """Best effort (the disk may be full): the error itself is raised by the caller."""
        if self.claim is not None:
            self.claim.release()
        if self.is_done():
            return
        with contextlib.suppress(OSError):
            self._write_failure(exc)

    def _write_failure(self, exc: BaseException) -> None:
        write_json_atomic(failed_path(self.cache.root, self.view, self.shard), {
            "shard": self.shard, "view": self.view, "attempt": self.attempt,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc))[-4000:],
            "host": socket.gethostname(), "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, self.cache.root)

    def __enter__(self) -> "ShardWriter":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.tmp is not None:
            remove_tree(self.tmp, self.cache.root)
            self.tmp = None
        if self.claim is not None:
            self.claim.release()
        if exc is not None and isinstance(exc, Exception):
            self.record_failure(exc)
        return False

"""A view's commit log: one JSON line per committed shard in ``views/VIEW/.progress.jsonl``.

Input: a view's folder (and its committed shards). Output: shard -> its latest commit record
(rows, failed segments, attempt, seconds, finished), read from the log in one pass; a committed
shard without a line (an older cache, a lost append) is read from its marker, which stays the
truth. ``Cache.shard_states`` takes the failed-segment counts from here, ``xmic slurm status``
the timings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from xmic.cache.paths import MARKER, PROGRESS, read_cache_json


def read_commit_log(vdir: Path) -> dict[str, dict]:
    """Shard -> its latest line (broken lines are skipped)."""
    out: dict[str, dict] = {}
    try:
        with open(Path(vdir) / PROGRESS, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            rec = json.loads(line)
            out[rec["shard"]] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return out


def commit_records(vdir: Path, committed: dict[str, Path]) -> dict[str, dict]:
    """Shard -> {rows, failed, attempt, seconds, finished} of every committed shard. A line
    older than the shard's marker (the shard was committed again) is replaced by the marker."""
    log = read_commit_log(vdir)
    out = {}
    for shard, path in committed.items():
        rec = log.get(shard)
        if rec is None or _stale(rec, path):
            full = read_cache_json(Path(path) / MARKER, f"marker of shard {shard}")
            st = full.get("stats", {})
            rec = {"rows": full.get("rows", 0), "failed": full.get("failed", 0),
                   **{k: st.get(k) for k in ("attempt", "seconds", "finished")}}
        out[shard] = rec
    return out


def _stale(rec: dict, path: Path) -> bool:
    """A line written before the shard's current marker: its shard was replaced (redone)."""
    if "marker_mtime_ns" not in rec:
        return False
    try:
        return os.stat(os.path.join(path, MARKER)).st_mtime_ns != rec["marker_mtime_ns"]
    except OSError:
        return True

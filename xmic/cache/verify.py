"""``verify``: find everything wrong with a cache, one line per problem.

Input: a ``Cache``; ``deep`` also recomputes data checksums; ``partial`` accepts shards that are
not committed yet (a cache still being extracted). Output: a list of problem strings, each
naming the view, shard or segment (empty = the cache is sound). Checks: manifest and plan
readable, segment ids unique; per view its record; per committed shard the marker (view, shard,
rows, dtype, width, fingerprint against the view's), data files present at their recorded sizes,
array metadata, rows.parquet hash and content against the plan (every row inside the shard),
values finite, and with ``deep`` the data checksum; folders without a marker; uncommitted
shards; the stored index against plan + shards; vocabularies.
"""
from __future__ import annotations

import json
import os

import numpy as np

from xmic.cache import fingerprint as fpmod
from xmic.cache.backends import array_checksum, array_shape, read_array
from xmic.cache.index import check_rows, consolidate, view_columns
from xmic.files.atomic import sha256_file
from xmic.cache.paths import FAILED_SUFFIX, INDEX, CacheError, shard_dir, view_dir, ROWS
from xmic.cache.reader import check_data_files
from xmic.cache.cache_folder import Cache, read_parquet
from xmic.cache.writer import nonfinite_rows
from xmic.cache.vocab import load_vocab, vocab_names

MARKER_KEYS = ("view", "shard", "backend", "data", "rows", "dim", "dtype", "checksum", "files",
               "rows_sha256", "fingerprint")


def _verify_shard(cache: Cache, view: str, rec: dict, shard: str, plan_ids: list[str] | None,
                  deep: bool) -> tuple[list[str], object, int]:
    where = f"view {view}, shard {shard}"
    try:
        m = cache.marker(view, shard)
    except CacheError as e:
        return [f"{where}: {e}"], None, 0
    missing = [k for k in MARKER_KEYS if k not in m]
    if missing:
        return [f"{where}: marker lacks {missing}"], None, 0
    problems = []
    if m["view"] != view or m["shard"] != shard:
        problems.append(f"{where}: marker belongs to view {m['view']}, shard {m['shard']}")
    if m["dim"] != rec["dim"] or m["dtype"] != rec["dtype"]:
        problems.append(f"{where}: marker says width {m['dim']} {m['dtype']}, view holds "
                        f"{rec['dim']} {rec['dtype']}")
    if m["fingerprint"] != rec["fingerprint"]:
        problems.append(f"{where}: fingerprint {fpmod.fingerprint_id(m['fingerprint'])} differs from "
                        f"the view's {rec['fingerprint_id']}: "
                        + "; ".join(fpmod.diff(rec["fingerprint"], m["fingerprint"])))
    if plan_ids is None:
        problems.append(f"{where}: shard is not in the plan (segments.parquet)")
    try:
        path = check_data_files(cache, view, shard, m)
        shape, dtype = array_shape(m["backend"], path)
        if shape != (m["rows"], m["dim"]) or dtype != m["dtype"]:
            problems.append(f"{where}: data is {shape} {dtype}, marker says "
                            f"({m['rows']}, {m['dim']}) {m['dtype']}")
        else:
            arr = read_array(m["backend"], path)  # [rows, D]
            bad = nonfinite_rows(arr)
            if bad.any():
                problems.append(f"{where}: {int(bad.sum())} row(s) hold NaN or Inf, first at row "
                                f"{int(np.flatnonzero(bad)[0])}")
            if deep and array_checksum(arr) != m["checksum"]:
                problems.append(f"{where}: data checksum differs from the marker (bytes changed "
                                "after commit): delete the shard folder and re-run it")
    except CacheError as e:
        problems.append(str(e))
    rows_path = shard_dir(cache.root, view, shard) / ROWS
    rows = None
    try:
        if sha256_file(rows_path) != m["rows_sha256"]:
            problems.append(f"{where}: rows.parquet differs from the hash in its marker")
        rows = read_parquet(rows_path, f"rows of shard {shard}")
        if plan_ids is not None:
            problems += check_rows(rows, plan_ids, m["rows"], where)
    except (CacheError, OSError) as e:
        problems.append(f"{where}: {e}")
    return problems, rows, m["rows"]


def verify(cache: Cache, deep: bool = False, partial: bool = False, progress=None) -> list[str]:
    problems: list[str] = []
    try:
        plan = cache.plan()
    except CacheError as e:
        return [str(e)]
    ids = plan["segment_id"].to_pylist()
    if len(set(ids)) != len(ids):
        dup = sorted({s for s in ids if ids.count(s) > 1})[:5]
        problems.append(f"segments.parquet: duplicate segment ids {dup}")
    plan_by_shard: dict[str, list[str]] = {}
    for sid, shard in zip(ids, plan["shard"].to_pylist()):
        plan_by_shard.setdefault(shard, []).append(sid)
    committed_rows: dict[str, dict] = {}
    shard_rows_count: dict[tuple[str, str], int] = {}
    for view, rec in cache.views().items():
        committed = cache.committed(view)
        committed_rows[view] = {}
        vdir = view_dir(cache.root, view)
        for e in os.scandir(vdir):
            if e.is_dir() and not e.name.startswith(".") and e.name not in committed:
                problems.append(f"view {view}, shard {e.name}: folder without a completion marker "
                                "(not counted as done); delete it and re-run the shard")
        for shard in sorted(committed):
            found, rows, n = _verify_shard(cache, view, rec, shard, plan_by_shard.get(shard), deep)
            problems += found
            if rows is not None:
                committed_rows[view][shard] = rows
                shard_rows_count[(view, shard)] = n
            if progress:
                progress(view, shard)
        if not partial:
            states = cache.shard_states(view)  # one listing of the view, not one per shard
            for shard in plan_by_shard:
                if shard not in committed:
                    state = states.get(shard, "pending")
                    why = ""
                    failed = vdir / (shard + FAILED_SUFFIX)
                    if state == "failed" and failed.exists():
                        why = ": " + json.loads(failed.read_text()).get("error", "")[:300]
                    problems.append(f"view {view}, shard {shard}: not committed ({state}{why})")
    index_path = cache.root / INDEX
    if index_path.exists():
        try:
            stored = read_parquet(index_path, "index")
            problems += _check_index(stored, consolidate(plan, committed_rows), shard_rows_count)
        except CacheError as e:
            problems.append(str(e))
    for name in vocab_names(cache):
        try:
            v = load_vocab(cache, name)
            if v.embeddings.shape[0] != len(v.classes) or not np.isfinite(v.embeddings).all():
                problems.append(f"vocabulary {name}: embeddings do not match its classes or are "
                                "not finite")
        except CacheError as e:
            problems.append(f"vocabulary {name}: {e}")
    return problems


def _check_index(stored, fresh, shard_rows: dict) -> list[str]:
    problems = []
    if stored.num_rows != fresh.num_rows or \
            stored["segment_id"].to_pylist() != fresh["segment_id"].to_pylist():
        return ["index.parquet: segments differ from segments.parquet; delete index.parquet to "
                "rebuild it"]
    ids = stored["segment_id"].to_pylist()
    for col in fresh.column_names:
        if not col.endswith("__shard"):
            continue
        view = col[: -len("__shard")]
        s, o, c = view_columns(view)
        if any(x not in stored.column_names for x in (s, o, c)):
            problems.append(f"index.parquet: columns of view {view} missing; delete it to rebuild")
            continue
        sh = stored[s].to_pylist()
        off = stored[o].to_pylist()
        cnt = stored[c].to_pylist()
        for i, sid in enumerate(ids):
            if sh[i] is None:
                continue
            n = shard_rows.get((view, sh[i]))
            if n is None or off[i] is None or cnt[i] is None or off[i] < 0 or off[i] + cnt[i] > n:
                problems.append(f"index.parquet: segment {sid}, view {view}: rows "
                                f"{off[i]}..{(off[i] or 0) + (cnt[i] or 0)} lie outside shard "
                                f"{sh[i]} ({n} rows); delete index.parquet to rebuild it")
    if not problems and not stored.select(fresh.column_names).equals(fresh):
        problems.append("index.parquet: differs from plan + committed shards; delete it to rebuild")
    return problems

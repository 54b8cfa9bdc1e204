"""The parquet index: segment plan, per-shard rows, and their consolidation.

Inputs: segment columns (``annotations.Segments``), per-shard row tables written by shard writers.
Outputs (pyarrow Tables):
- plan (``segments.parquet``): ``SEGMENT_FIELDS`` + ``shard`` (the shard each segment is written to);
- shard rows (``views/V/S/rows.parquet``): segment_id, offset, count, frame_indices, status, error;
- index (``index.parquet``): the plan, plus ``frame_indices``, ``status`` (ok | failed | pending),
  ``error``, and per view V the columns ``V__shard``, ``V__offset``, ``V__count`` (null while the
  shard is not committed). Rows stay in plan order; offsets are CSR-style row offsets in the shard.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xmic.cache.paths import CacheError, check_cache_name

SEGMENT_FIELDS = [
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string()),
    pa.field("split", pa.string()),
    pa.field("video_id", pa.string()),      # the media a segment is read from
    pa.field("start_frame", pa.int64()),
    pa.field("stop_frame", pa.int64()),
    pa.field("start_sec", pa.float64()),
    pa.field("stop_sec", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("verb_id", pa.int32()),
    pa.field("verb", pa.string()),
    pa.field("noun_id", pa.int32()),
    pa.field("noun", pa.string()),
    # the recording a segment was cut from: held-out splits keep a recording's segments together
    # (EPIC video, Ego4D video_uid, EGTEA session); plans of earlier releases read it as video_id
    pa.field("recording_id", pa.string()),
]
PLAN_SCHEMA = pa.schema(SEGMENT_FIELDS + [pa.field("shard", pa.string(), nullable=False)])
ROWS_SCHEMA = pa.schema([
    pa.field("segment_id", pa.string(), nullable=False),
    pa.field("offset", pa.int64()),
    pa.field("count", pa.int32()),
    pa.field("frame_indices", pa.list_(pa.int32())),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
])


def view_columns(view: str) -> tuple[str, str, str]:
    return f"{view}__shard", f"{view}__offset", f"{view}__count"


def make_plan(columns: dict, shard_segments: int, prefix: str) -> pa.Table:
    """Assign segments, in annotation order, to shards ``{prefix}-00000`` of ``shard_segments``."""
    if shard_segments < 1:
        raise CacheError(f"shard_segments must be >= 1, got {shard_segments}")
    check_cache_name("shard prefix", prefix)
    n = len(columns["segment_id"])
    shards = [f"{prefix}-{i // shard_segments:05d}" for i in range(n)]
    columns = {"recording_id": columns["video_id"], **columns}
    data = {f.name: columns[f.name] for f in SEGMENT_FIELDS}
    check_ranges(data)
    data["shard"] = shards
    return pa.Table.from_pydict(data, schema=PLAN_SCHEMA)


def with_recordings(plan: pa.Table) -> pa.Table:
    """A plan of an earlier release (no ``recording_id``) with each segment's video as its
    recording; a current plan as it is."""
    if "recording_id" in plan.column_names:
        return plan
    at = plan.column_names.index("shard")
    return plan.add_column(at, "recording_id", plan["video_id"])


# frame numbers end up in the rows' int32 frame_indices: bound them by that, not by int64
INT_BOUNDS = {"start_frame": (0, 2**31 - 1), "stop_frame": (0, 2**31 - 1),
              "verb_id": (-2**31, 2**31 - 1), "noun_id": (-2**31, 2**31 - 1)}


def check_ranges(data: dict) -> None:
    """Refuse, naming the segment, numbers the index cannot hold (instead of an overflow)."""
    for col, (lo, hi) in INT_BOUNDS.items():
        for sid, v in zip(data["segment_id"], data[col]):
            if v is not None and not lo <= int(v) <= hi:
                raise CacheError(f"segment {sid}: {col} {v} is outside {lo}..{hi}; fix the "
                                 "annotation row")


def merge_plans(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """Add the splits of ``new`` to a cache's plan. Re-adding an identical split is a no-op; a
    split that exists with other segments, or segment ids used twice, are errors."""
    if old is None or old.num_rows == 0:
        return new
    added, regrouped = [], {}
    for split in dict.fromkeys(new["split"].to_pylist()):
        part = new.filter(pc.equal(new["split"], split))
        existing = old.filter(pc.equal(old["split"], split))
        if existing.num_rows:
            if not _same_segments(existing, part):
                raise CacheError(f"split {split!r} is already in this cache with other segments or "
                                 "labels; import it into a new cache, or under another --split name")
            if not existing["recording_id"].equals(part["recording_id"]):
                regrouped[split] = part["recording_id"]
            continue
        added.append(part)
    old = _regroup(old, regrouped)
    if not added:
        return old
    fresh = pa.concat_tables(added)
    dup = set(old["segment_id"].to_pylist()) & set(fresh["segment_id"].to_pylist())
    if dup:
        raise CacheError(f"segment id(s) {sorted(dup)[:5]} are already in this cache under "
                         "another split; segment ids must be unique within a cache")
    taken = set(old["shard"].to_pylist()) & set(fresh["shard"].to_pylist())
    if taken:
        raise CacheError(f"shard name(s) {sorted(taken)[:3]} already used; pick another prefix")
    return pa.concat_tables([old, fresh])


def _same_segments(a: pa.Table, b: pa.Table) -> bool:
    """The same segments, labels and shards; recordings aside (a plan of an earlier release
    read each video as its recording: planning the split again brings the real grouping)."""
    keep = [c for c in a.column_names if c != "recording_id"]
    return a.select(keep).equals(b.select(keep))


def _regroup(plan: pa.Table, recordings: dict) -> pa.Table:
    """``plan`` with the recordings of the splits in ``recordings`` (split -> column) replaced."""
    if not recordings:
        return plan
    column = plan["recording_id"].to_pylist()
    splits = plan["split"].to_pylist()
    given = {s: iter(c.to_pylist()) for s, c in recordings.items()}
    column = [next(given[s]) if s in given else r for s, r in zip(splits, column)]
    at = plan.column_names.index("recording_id")
    return plan.set_column(at, "recording_id", pa.array(column, pa.string()))


def rows_table(segment_ids, offsets, counts, frame_indices, statuses, errors) -> pa.Table:
    return pa.Table.from_pydict({
        "segment_id": segment_ids, "offset": offsets, "count": counts,
        "frame_indices": frame_indices, "status": statuses, "error": errors,
    }, schema=ROWS_SCHEMA)


def check_rows(rows: pa.Table, plan_ids: list[str], n_rows: int, where: str) -> list[str]:
    """Problems of one shard's rows against the plan's segments for that shard and its row count."""
    problems = []
    if rows.schema.names != ROWS_SCHEMA.names:
        return [f"{where}: rows.parquet has columns {rows.schema.names}, expected {ROWS_SCHEMA.names}"]
    ids = rows["segment_id"].to_pylist()
    if ids != plan_ids:
        missing = sorted(set(plan_ids) - set(ids))[:3]
        extra = sorted(set(ids) - set(plan_ids))[:3]
        problems.append(f"{where}: segments differ from the plan (missing {missing}, extra {extra})")
    off = rows["offset"].to_numpy(zero_copy_only=False)
    cnt = rows["count"].to_numpy(zero_copy_only=False)
    st = rows["status"].to_pylist()
    fi_len = pc.list_value_length(rows["frame_indices"]).to_numpy(zero_copy_only=False)
    for i, sid in enumerate(ids):
        if st[i] not in ("ok", "failed"):
            problems.append(f"{where}: segment {sid}: bad status {st[i]!r}")
        elif st[i] == "ok" and cnt[i] < 1:
            problems.append(f"{where}: segment {sid}: status ok with no frames")
        if off[i] < 0 or off[i] + cnt[i] > n_rows:
            problems.append(f"{where}: segment {sid}: rows {off[i]}..{off[i] + cnt[i]} lie past the "
                            f"end of the shard ({n_rows} rows)")
        if st[i] == "ok" and fi_len[i] != cnt[i]:
            problems.append(f"{where}: segment {sid}: {cnt[i]} rows but {fi_len[i]} frame indices")
    return problems


def consolidate(plan: pa.Table, committed: dict[str, dict[str, pa.Table]]) -> pa.Table:
    """Index = plan + per-view location columns from ``committed[view][shard] -> rows``.
    A segment is ok when every view that has it committed says ok, failed when any says failed
    (first error kept), pending when no view has it committed yet."""
    n = plan.num_rows
    pos = {sid: i for i, sid in enumerate(plan["segment_id"].to_pylist())}
    status = np.full(n, "pending", dtype=object)
    error = np.full(n, None, dtype=object)
    frames: list = [None] * n
    cols = {}
    for view in sorted(committed):
        shard_col = np.full(n, None, dtype=object)
        off_col = np.full(n, -1, dtype=np.int64)
        cnt_col = np.full(n, -1, dtype=np.int64)
        for shard, rows in sorted(committed[view].items()):
            ids = rows["segment_id"].to_pylist()
            idx = np.array([pos[s] for s in ids if s in pos], dtype=np.int64)
            if len(idx) != len(ids):
                continue  # rows of segments not in the plan: verify reports them
            shard_col[idx] = shard
            off_col[idx] = rows["offset"].to_numpy(zero_copy_only=False)
            cnt_col[idx] = rows["count"].to_numpy(zero_copy_only=False)
            st = rows["status"].to_pylist()
            er = rows["error"].to_pylist()
            fi = rows["frame_indices"].to_pylist()
            for j, i in enumerate(idx):
                if st[j] == "failed":
                    if status[i] != "failed":
                        error[i] = f"{view}: {er[j]}"
                    status[i] = "failed"
                elif status[i] == "pending":
                    status[i] = "ok"
                if frames[i] is None and st[j] == "ok":
                    frames[i] = fi[j]
        has = off_col >= 0
        s, o, c = view_columns(view)
        cols[s] = pa.array(shard_col, type=pa.string())
        cols[o] = pa.array(off_col, type=pa.int64(), mask=~has)
        cols[c] = pa.array(cnt_col.astype(np.int32), type=pa.int32(), mask=~has)
    out = plan.append_column("frame_indices", pa.array(frames, type=pa.list_(pa.int32())))
    out = out.append_column("status", pa.array(status.tolist(), type=pa.string()))
    out = out.append_column("error", pa.array(error.tolist(), type=pa.string()))
    for name, arr in cols.items():
        out = out.append_column(name, arr)
    return out

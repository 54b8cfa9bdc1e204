"""Extraction progress read from the cache alone: no scheduler query per job.

Input: a cache folder with an extraction plan. Output: ``shard_report`` -> one entry per
planned shard (state over the views it needs: done | running | failed | pending; attempts of
done, running and failed shards; last error; frames and seconds of done shards; job and host of
running ones) and ``summarize`` -> counts, frames/s, ETA and the failed shards with their
messages. A committed shard holding failed segments counts as failed (``failed_segments`` > 0),
with the first segment's message. Sources: one listing per view folder (a shard folder exists
only once committed), the commit log ``.progress.jsonl`` (the marker where a line is missing),
``SHARD.failed.json``, running claims (``.running/``), ``rows.parquet`` of shards with failed
segments, and ``slurm/submissions.jsonl``.
"""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from xmic.cache import Cache
from xmic.cache.claims import live_claims
from xmic.slurm.scheduler import submission_queue_line
from xmic.cache.paths import (FAILED_SUFFIX, ROWS, SUBMISSIONS, CacheError, check_cache_name,
                              count_attempts, view_dir)
from xmic.extract.plan_record import ExtractPlan



def planned_views(cache: Cache, rename: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Split -> cache views its shards must have (the extraction plan's views, renamed)."""
    if not ExtractPlan.exists(cache.root):
        return {s: sorted(cache.views()) for s in cache.splits()}
    rename = rename or {}
    return {split: [rename.get(v, v) for v in info.views]
            for split, info in ExtractPlan.load(cache.root).splits.items()}


def read_submissions(cache_root: Path) -> list[dict]:
    path = Path(cache_root) / SUBMISSIONS
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a crash while appending: skip it, say where
                out.append({"broken_line": i})
    return out


def _first_failed_segment(path: Path) -> str | None:
    rows = pq.read_table(path / ROWS, columns=["segment_id", "status", "error"]).to_pylist()
    bad = [r for r in rows if r["status"] != "ok"]
    return f"segment {bad[0]['segment_id']}: {bad[0]['error']}" if bad else None


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _json(path: str, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: {what} is unreadable ({e})") from None


def shard_report(cache: Cache, views_by_split: dict[str, list[str]]) -> dict[str, dict]:
    """Shard -> {state, split, segments, views, attempts, error, frames, seconds, ...}."""
    plan = cache.plan()
    counts: dict[str, int] = {}
    split_of: dict[str, str] = {}
    for shard, split in zip(plan["shard"].to_pylist(), plan["split"].to_pylist()):
        counts[shard] = counts.get(shard, 0) + 1
        split_of[shard] = split
    views = sorted({v for vs in views_by_split.values() for v in vs})
    claims = {v: live_claims(cache.root, v) for v in views}
    both = {v: cache.states_and_commits(v, claims[v]) for v in views}  # one read per view
    states = {v: both[v][0] for v in views}
    vdirs = {v: view_dir(cache.root, v) for v in views}  # resolved once: plain joins below
    progress = {v: both[v][1] for v in views}
    report: dict[str, dict] = {}
    for shard, n in counts.items():
        check_cache_name("shard", shard)  # a plan's shard name never leaves its view folder
        need = views_by_split.get(split_of[shard], views)
        r = {"split": split_of[shard], "segments": n, "views": {}, "attempts": 0,
             "error": None, "failed_segments": 0, "frames": 0}
        for v in need:
            st = states[v].get(shard, "pending")
            r["views"][v] = st
            vdir = vdirs[v]
            if st in ("failed", "running"):
                r["attempts"] = max(r["attempts"], count_attempts(cache.root, v, shard))
            m = progress[v].get(shard)  # committed: its commit record
            if m is not None and st != "running":
                r["attempts"] = max(r["attempts"], int(m.get("attempt") or 0))
                r["frames"] += int(m.get("rows") or 0)
                fin = _epoch(m.get("finished"))
                if fin is not None:
                    r["finished"] = max(r.get("finished", fin), fin)
                    r["started"] = min(r.get("started", fin), fin - float(m.get("seconds") or 0))
                if m.get("failed"):
                    r["failed_segments"] = max(r["failed_segments"], int(m["failed"]))
                    r["error"] = r["error"] or _first_failed_segment(vdir / shard)
            elif st == "running":
                c = claims[v].get(shard, {})
                r["job"], r["host"], r["heartbeat_age_s"] = c.get("job"), c.get("host"), c.get("age_s")
            elif st == "failed" and m is None:
                f = _json(os.path.join(vdir, shard + FAILED_SUFFIX), f"failure record of {shard}")
                r["error"] = f"{v}: attempt {f.get('attempt')}: {f.get('error')}"
        vs = list(r["views"].values())
        r["state"] = ("done" if all(s == "done" for s in vs) and not r["failed_segments"] else
                      "running" if "running" in vs else
                      "failed" if "failed" in vs or r["failed_segments"] else "pending")
        report[shard] = r
    return report


def summarize(report: dict[str, dict]) -> dict:
    by_state = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for r in report.values():
        by_state[r["state"]] += 1
    finished = [r for r in report.values() if "finished" in r]
    frames = sum(r["frames"] for r in finished)
    segs_done = sum(r["segments"] for r in finished)
    out = {"shards": len(report), **by_state,
           "segments": sum(r["segments"] for r in report.values()),
           "segments_done": segs_done, "frames": frames, "frames_per_s": None, "eta_s": None}
    busy = _busy_seconds([(r["started"], r["finished"]) for r in finished])
    if busy > 0:  # time during which at least one shard was being extracted
        out["frames_per_s"] = round(frames / busy, 1)
        left = out["segments"] - segs_done
        active = by_state["running"] or by_state["pending"]
        out["eta_s"] = 0 if not left else round(left * busy / segs_done) if active else None
    out["failed_shards"] = [{"shard": s, "error": r["error"], "attempts": r["attempts"],
                             "failed_segments": r["failed_segments"]}
                            for s, r in report.items() if r["state"] == "failed"]
    out["running_shards"] = [{"shard": s, "job": r.get("job"), "host": r.get("host"),
                              "attempts": r["attempts"]}
                             for s, r in report.items() if r["state"] == "running"]
    return out


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals (idle gaps between jobs do not count)."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def duration(s: float | None) -> str:
    """Seconds as 7m10s or 2h05m, under a minute as 4.2s ('unknown' for None)."""
    if s is None:
        return "unknown"
    if s < 60:
        return f"{s:.1f}s"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_status(cache: Cache, summary: dict, submissions: list[dict]) -> str:
    lines = [f"{cache.root}: {summary['shards']} shards, {summary['segments']} segments"]
    lines.append("  " + "  ".join(f"{k} {summary[k]}" for k in ("done", "running", "failed", "pending")))
    fps = summary["frames_per_s"]
    lines.append(f"  throughput {fps if fps is not None else '-'} frames/s over done shards; "
                 f"ETA {duration(summary['eta_s']) if summary['eta_s'] is not None else '-'}")
    if submissions:
        last = submissions[-1]
        ids = ", ".join(a["job_id"] for a in last.get("arrays", []))
        lines.append(f"  submissions {len(submissions)}; last {last.get('time', '?')} "
                     f"({last.get('kind', 'submit')}, {last.get('executor')}: {ids or 'no jobs'}); "
                     f"logs in {last.get('log_dir')}")
        line = submission_queue_line(submissions)  # what Slurm itself says: queued, pending why
        if line:
            lines.append("  " + line)
    for r in summary["running_shards"][:20]:
        lines.append(f"  running {r['shard']}: job {r['job']} on {r['host']}, attempt {r['attempts']}")
    for r in summary["failed_shards"][:50]:
        what = f"{r['failed_segments']} failed segment(s); " if r["failed_segments"] else ""
        lines.append(f"  FAILED {r['shard']}: {what}{r['error']} (attempts {r['attempts']})")
    if len(summary["failed_shards"]) > 50:
        lines.append(f"  ... and {len(summary['failed_shards']) - 50} more failed shards (--json)")
    if summary["failed"]:
        lines.append(f"  fix the inputs named above, then: xmic slurm retry {cache.root} (job "
                     f"arrays) or xmic extract run {cache.root} --redo-failed (this machine)")
    return "\n".join(lines)


def rename_of(submissions: list[dict]) -> dict[str, str]:
    """The view renames of the latest submission's extraction config (planned -> cache view)."""
    for sub in reversed(submissions):
        items = (sub.get("extract") or {}).get("rename")
        if items is not None:
            return dict(item.split("=", 1) for item in items)
    return {}


def status(cache_dir: Path) -> tuple[Cache, dict, dict, list[dict]]:
    """(cache, shard report, summary, submissions) of an extraction."""
    cache = Cache.open(cache_dir)
    subs = read_submissions(cache.root)
    report = shard_report(cache, planned_views(cache, rename_of(subs)))
    return cache, report, summarize(report), subs

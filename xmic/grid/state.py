"""A grid's state, read from its folder only (never from the scheduler).

Inputs: a grid folder and its plan. Per run folder (``GRID/runs/ID/``) the files the runner
writes: ``finished.json`` (all targets scored; seconds), ``failed.json`` (reason), a running
claim ``running.json`` (``xmic.files.claims``: host, pid, job, start; its heartbeat on a timer), and each
target's ``eval/DATASET-SPLIT/metrics.json``. Output: per run done | running | failed |
pending, with failures' reasons, and a summary with an ETA from finished runs' times.
A run is done when ``finished.json`` exists and every target's metrics are present and valid.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from xmic.evaluate.table import valid_metrics
from xmic.files import claims
from xmic.grid.layout import FAILED, FINISHED, RUNNING
from xmic.train.run_folder import EVAL_METRICS, evaluation_dir

def eval_dir(run_dir: Path, target: dict) -> Path:
    return evaluation_dir(run_dir, target["dataset"], target["split"])


def read_metrics(run_dir: Path, target: dict) -> dict | None:
    """A target's metrics, or None when missing or not valid (a run killed while writing, a file
    edited by hand): the runner scores it again, the table counts it missing."""
    try:
        m = json.loads((eval_dir(run_dir, target) / EVAL_METRICS).read_text())
    except (OSError, ValueError):
        return None
    return m if valid_metrics(m) else None


def _json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def run_state(grid_dir: Path, run: dict) -> dict:
    d = Path(grid_dir) / run["dir"]
    fin = _json(d / FINISHED)
    if fin is not None and all(read_metrics(d, t) is not None for t in run["targets"]):
        return {"state": "done", "seconds": fin.get("seconds")}
    claim, age = claims.read(d / RUNNING)
    if claim is not None and claims.alive(claim, age):
        return {"state": "running", "host": claim.get("host"), "job": claim.get("job"),
                "since": claim.get("started")}
    failed = _json(d / FAILED)
    if failed is not None:
        return {"state": "failed", "error": failed.get("error", "unknown error")}
    return {"state": "pending"}


def grid_status(grid_dir: Path, grid: dict) -> tuple[dict, dict]:
    """(run id -> state dict, summary with counts, failures and ETA)."""
    report = {r["id"]: run_state(grid_dir, r) for r in grid["runs"]}
    counts = {k: sum(1 for s in report.values() if s["state"] == k)
              for k in ("done", "running", "failed", "pending")}
    times = [s["seconds"] for s in report.values() if s["state"] == "done" and s.get("seconds")]
    left = counts["pending"] + counts["running"]
    per_run = statistics.mean(times) if times else None
    summary = {"runs": len(grid["runs"]), **counts,
               "seconds_per_run": round(per_run, 1) if per_run else None,
               "eta_s": round(per_run * left, 1) if per_run is not None else None,
               "failures": [{"run": k, "error": s["error"]} for k, s in report.items()
                            if s["state"] == "failed"]}
    return report, summary


def format_status(grid_dir: Path, report: dict, summary: dict) -> str:
    s = summary
    eta = (f"; about {s['eta_s'] / 60:.1f} min left at {s['seconds_per_run']:.0f} s per run"
           if s["eta_s"] is not None and (s["pending"] or s["running"]) else "")
    lines = [f"grid {grid_dir}: {s['runs']} runs: {s['done']} done, {s['running']} running, "
             f"{s['failed']} failed, {s['pending']} pending{eta}"]
    for rid, st in report.items():
        if st["state"] == "running":
            lines.append(f"  running {rid} on {st.get('host')}" +
                         (f", job {st['job']}" if st.get("job") else ""))
    for f in s["failures"]:
        lines.append(f"  FAILED {f['run']}: {f['error']}")
    return "\n".join(lines)


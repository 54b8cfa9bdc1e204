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
import time
from pathlib import Path

from xmic.evaluate.table import valid_metrics
from xmic.files import claims
from xmic.slurm.status import duration
from xmic.grid.layout import BORROWED_COSTS, FAILED, FINISHED, RUNNING
from xmic.train.run_folder import EVAL_METRICS, METRICS, evaluation_dir

def eval_dir(run_dir: Path, target: dict) -> Path:
    return evaluation_dir(run_dir, target["dataset"], target["split"],
                          target.get("classes", "all"))


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


def epoch_seconds(run_dir: Path) -> list[float]:
    """The seconds of each epoch a run has finished (its ``metrics.jsonl``), training only."""
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("seconds"), (int, float)):
            out.append(float(row["seconds"]))
    return out


def planned_epochs(run: dict) -> int:
    """The epochs a planned run trains (at least one: a zero-shot row scores once)."""
    return max(1, int(run["config"].get("epochs", 1)))


def method_costs(grid_dir: Path, grid: dict, report: dict) -> dict:
    """Per method: runs done and left, and what one of its runs costs: the mean of its finished
    runs, else its epochs measured so far times the epochs a run trains (CoCoOp's cost is not
    X-MIC's: a grid's methods differ by orders of magnitude), else what another grid measured
    (``grid.costs``), else unknown."""
    out: dict = {}
    for r in grid["runs"]:
        m = out.setdefault(r["method"], {"done": 0, "left": 0, "failed": 0, "times": [],
                                         "runs": []})
        st = report[r["id"]]["state"]
        m[{"done": "done", "pending": "left", "running": "left"}.get(st, "failed")] += 1
        if st == "done" and report[r["id"]].get("seconds"):
            m["times"].append(report[r["id"]]["seconds"])
        m["runs"].append(r)
    borrowed = _json(Path(grid_dir) / BORROWED_COSTS) or {}
    for name, m in out.items():
        runs, times = m.pop("runs"), m.pop("times")
        m["seconds_per_run"], m["estimate"] = None, None
        if times:
            m["seconds_per_run"], m["estimate"] = round(statistics.mean(times), 1), "finished runs"
        elif m["left"]:
            epochs = [s for r in runs for s in epoch_seconds(Path(grid_dir) / r["dir"])]
            other = (borrowed.get("methods") or {}).get(name)
            if epochs:
                planned = statistics.mean(planned_epochs(r) for r in runs)
                m["seconds_per_run"] = round(statistics.mean(epochs) * planned, 1)
                m["estimate"] = f"{len(epochs)} epoch(s) measured"
            elif isinstance(other, dict) and isinstance(other.get("seconds_per_run"), (int, float)):
                m["seconds_per_run"] = float(other["seconds_per_run"])
                m["estimate"] = f"measured in {borrowed.get('from')}"
    return out


def grid_status(grid_dir: Path, grid: dict) -> tuple[dict, dict]:
    """(run id -> state dict, summary with counts, failures, per-method costs and ETA: each
    run left at its own method's cost, a running one less what it has run)."""
    report = {r["id"]: run_state(grid_dir, r) for r in grid["runs"]}
    counts = {k: sum(1 for s in report.values() if s["state"] == k)
              for k in ("done", "running", "failed", "pending")}
    times = [s["seconds"] for s in report.values() if s["state"] == "done" and s.get("seconds")]
    per_run = statistics.mean(times) if times else None
    methods = method_costs(grid_dir, grid, report)
    eta, unknown, priced, now = 0.0, [], 0, time.time()
    for r in grid["runs"]:
        st, cost = report[r["id"]], methods[r["method"]]["seconds_per_run"]
        if st["state"] not in ("pending", "running"):
            continue
        if cost is None:
            unknown.append(r["method"])
            continue
        ran = now - st["since"] if st["state"] == "running" and st.get("since") else 0.0
        eta += max(0.0, cost - ran)
        priced += 1
    summary = {"runs": len(grid["runs"]), **counts,
               "seconds_per_run": round(per_run, 1) if per_run else None,
               "eta_s": round(eta, 1) if not unknown or priced else None,
               "eta_unknown_methods": sorted(set(unknown)), "methods": methods,
               "failures": [{"run": k, "error": s["error"]} for k, s in report.items()
                            if s["state"] == "failed"]}
    return report, summary


def eta_words(s: dict) -> str:
    """The ETA of a status summary in words ('' when nothing is left)."""
    if not (s["pending"] or s["running"]):
        return ""
    unknown = s.get("eta_unknown_methods") or []
    if s["eta_s"] is None:
        return f"; no estimate yet ({', '.join(unknown)}: no run finished or epoch measured)"
    return (f"; about {duration(s['eta_s'])} left"
            + (f" and runs of {', '.join(unknown)} (not measured yet)" if unknown else ""))


def format_status(grid_dir: Path, report: dict, summary: dict) -> str:
    s = summary
    lines = [f"grid {grid_dir}: {s['runs']} runs: {s['done']} done, {s['running']} running, "
             f"{s['failed']} failed, {s['pending']} pending{eta_words(s)}"]
    for name, m in (s.get("methods") or {}).items():  # finished methods too: what a run cost
        cost = (f"{duration(m['seconds_per_run'])} a run ({m['estimate']})"
                if m["seconds_per_run"] is not None else "cost not measured yet")
        failed = f", {m['failed']} failed" if m["failed"] else ""
        lines.append(f"  {name}: {m['done']} done, {m['left']} left{failed}, {cost}")
    for rid, st in report.items():
        if st["state"] == "running":
            lines.append(f"  running {rid} on {st.get('host')}" +
                         (f", job {st['job']}" if st.get("job") else ""))
    for f in s["failures"]:
        lines.append(f"  FAILED {f['run']}: {f['error']}")
    return "\n".join(lines)


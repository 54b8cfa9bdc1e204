"""Running claims: which shards a live writer is producing right now, without a scheduler.

Inputs: a cache root, a view and a shard. A ``ShardWriter`` creates
``views/VIEW/.running/SHARD.HOST.PID.RAND`` (JSON: host, pid, job id from the Slurm/submitit
environment, start time) when it starts, touches it as segments arrive (the heartbeat) and
removes it when it commits or fails. Outputs of ``live_claims``: shard -> claim for the claims
whose writer is alive: on this host, its pid runs; on another host, its heartbeat is younger
than ``STALE_AFTER_S``. Claims of killed writers are ignored, never trusted.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from xmic.cache.layout import pid_alive, tmp_name, view_dir

RUNNING = ".running"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 600.0


def job_id_from_env() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")


class Claim:
    def __init__(self, root: Path, view: str, shard: str):
        d = view_dir(root, view) / RUNNING
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / tmp_name(shard)
        self.path.write_text(json.dumps({
            "shard": shard, "view": view, "host": socket.gethostname(), "pid": os.getpid(),
            "job": job_id_from_env(), "started": time.time()}))
        self._beat = time.monotonic()

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat >= HEARTBEAT_S:
            self._beat = now
            try:
                os.utime(self.path)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def live_claims(root: Path, view: str, shard: str | None = None) -> dict[str, dict]:
    """Shard -> claim (with ``age_s``) of every writer of ``view`` that is still alive (only
    those of ``shard`` when given)."""
    d = view_dir(root, view) / RUNNING
    if not d.is_dir():
        return {}
    now = time.time()
    host = socket.gethostname().replace(".", "_")[:40]
    out: dict[str, dict] = {}
    with os.scandir(d) as it:
        for e in it:
            parts = e.name.rsplit(".", 3)
            if len(parts) != 4 or not parts[2].isdigit() or shard not in (None, parts[0]):
                continue
            try:
                age = now - e.stat().st_mtime
            except FileNotFoundError:
                continue  # released while we looked
            alive = pid_alive(int(parts[2])) if parts[1] == host else age < STALE_AFTER_S
            if not alive:
                continue
            try:
                info = json.loads(Path(e.path).read_text())
            except (OSError, ValueError):
                info = {}
            info["age_s"] = round(age, 1)
            out[parts[0]] = info
    return out

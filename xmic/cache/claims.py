"""Running claims: which shards a live writer is producing right now, without a scheduler.

Inputs: a cache root, a view and a shard. A ``ShardWriter`` creates
``views/VIEW/.running/SHARD.HOST.PID.RAND`` (JSON: host, pid, job id from the Slurm/submitit
environment, start time) when it starts, touches it as segments arrive (the heartbeat) and
removes it when it commits or fails. Outputs of ``live_claims``: shard -> claim for the claims
whose writer is alive: its heartbeat is younger than ``STALE_AFTER_S`` and, on this host, its
pid runs. Claims of killed writers are ignored, never trusted.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from xmic.files.atomic import make_dirs, remove_file, tmp_name, write_new
from xmic.files.liveness import host_tag
from xmic.cache.paths import RUNNING, view_dir
from xmic.files.liveness import writer_alive
HEARTBEAT_S = 20.0
STALE_AFTER_S = 600.0


def job_id_from_env() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")


class Claim:
    def __init__(self, root: Path, view: str, shard: str):
        self.root = Path(root)
        d = make_dirs(view_dir(root, view) / RUNNING, self.root)
        self.path = d / tmp_name(shard)
        write_new(self.path, json.dumps({
            "shard": shard, "view": view, "host": socket.gethostname(), "pid": os.getpid(),
            "job": job_id_from_env(), "started": time.time()}).encode(), self.root, sync=False)
        self._beat = time.monotonic()

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat >= HEARTBEAT_S:
            self._beat = now
            try:
                os.utime(self.path, follow_symlinks=False)
            except FileNotFoundError:
                pass

    def release(self) -> None:
        remove_file(self.path, self.root)


def _parse(name: str) -> tuple[str, str, int] | None:
    """(shard, host, pid) from a claim's file name ``SHARD.HOST.PID.RAND``, or None."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def reap_dead_claims(root: Path, view: str) -> int:
    """Remove the claims of writers on this host whose process is gone (killed, Ctrl-C'd before
    they could clean up) or whose heartbeat is stale (its pid now another process's); claims
    of other hosts are left to age out. Returns how many."""
    d = view_dir(root, view) / RUNNING
    if not d.is_dir():
        return 0
    host, n, now = host_tag(), 0, time.time()
    for name in os.listdir(d):
        who = _parse(name)
        if not who or who[1] != host:
            continue
        try:
            age = now - os.lstat(d / name).st_mtime
        except FileNotFoundError:
            continue  # released while we looked
        if not writer_alive(True, who[2], age, STALE_AFTER_S):
            remove_file(d / name, Path(root))
            n += 1
    return n


def live_claims(root: Path, view: str, shard: str | None = None) -> dict[str, dict]:
    """Shard -> claim (with ``age_s``) of every writer of ``view`` that is still alive (only
    those of ``shard`` when given)."""
    d = view_dir(root, view) / RUNNING
    if not d.is_dir():
        return {}
    now = time.time()
    host = host_tag()
    out: dict[str, dict] = {}
    with os.scandir(d) as it:
        for e in it:
            who = _parse(e.name)
            if who is None or shard not in (None, who[0]) or e.is_symlink():
                continue
            try:
                age = now - e.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue  # released while we looked
            alive = writer_alive(who[1] == host, who[2], age, STALE_AFTER_S)
            if not alive:
                continue
            try:
                info = json.loads(Path(e.path).read_text())
            except (OSError, ValueError):
                info = {}
            info["age_s"] = round(age, 1)
            out[who[0]] = info
    return out

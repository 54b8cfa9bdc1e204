"""Claims: the one protocol by which a live writer holds a piece of work (a shard of a cache
view, a grid run) without a scheduler.

Input: the claim file's path and the folder it belongs to (nothing below that folder is
reached through a link). A claim is a JSON file (host, pid, Slurm or submitit job, start time,
a random token, and what the caller adds) created with O_EXCL; while it is held, a timer thread
refreshes its mtime every ``HEARTBEAT_S`` whatever the work is doing (a CoCoOp epoch, a slow
segment), and only while the file is still this claim's (its token), so a writer paused past
the staleness limit and taken over never touches its successor's claim; ``release`` removes it
on the same condition. Outputs: ``Claim.take`` (None while a live writer holds the path; a dead
writer's claim is taken over: renamed away, atomically, so one taker wins), ``read(path)`` ->
(body, age of its heartbeat) and ``alive(body, age)``, the one rule of liveness
(``files.liveness``): the heartbeat is younger than ``STALE_AFTER_S`` and, on this host, the pid
runs.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from xmic.files.atomic import create_json_exclusive, guard, remove_file
from xmic.files.liveness import host_tag, writer_alive

HEARTBEAT_S = 20.0      # a held claim's mtime is refreshed this often, on a timer
STALE_AFTER_S = 600.0   # a claim with no heartbeat for this long is dead, whatever its pid


def job_id_from_env() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")


def same_host(host) -> bool:
    """A claim's recorded host is this one (as written, or as a file name carries it)."""
    return host in (socket.gethostname(), host_tag())


def alive(body: dict | None, age_s: float) -> bool:
    """The one rule: a claim lives while its heartbeat is younger than ``STALE_AFTER_S`` and, on
    this host, its process runs."""
    return bool(body) and writer_alive(same_host(body.get("host")), body.get("pid"), age_s,
                                       STALE_AFTER_S)


def read(path: Path) -> tuple[dict | None, float]:
    """A claim's body ({} when unreadable) and the age of its heartbeat in seconds; (None, 0)
    when there is none. A link is never a claim."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, 0.0
    age = time.time() - st.st_mtime
    if not os.path.isfile(path) or os.path.islink(path):
        return {}, age
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}, age
    return (body if isinstance(body, dict) else {}), age


class Claim:
    def __init__(self, path: Path, root: Path, token: str):
        self.path, self.root, self.token = Path(path), Path(root), token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, path: Path, root: Path, **fields) -> "Claim | None":
        """The claim on ``path``, or None while a live writer (this process included) holds it."""
        path = Path(path)
        body = {**fields, "host": socket.gethostname(), "pid": os.getpid(),
                "job": job_id_from_env(), "started": time.time(), "token": uuid.uuid4().hex}
        for _ in range(2):
            if create_json_exclusive(path, body, root):
                return cls(path, root, body["token"])
            held, age = read(path)
            if held is not None and alive(held, age):
                return None
            dead = path.with_name(f".{path.name}.dead-{uuid.uuid4().hex[:8]}")
            try:
                guard(path, root)
                os.rename(path, dead)
            except FileNotFoundError:
                continue  # another taker reaped it first; try to create again
            remove_file(dead, root)
        return None

    def ours(self) -> bool:
        """The claim file is still this claim's (another writer may have taken it over while
        this one was stopped, paused or cut off)."""
        body, _ = read(self.path)
        return bool(body) and body.get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self.ours():
                    os.utime(self.path, follow_symlinks=False)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.ours():
            remove_file(self.path, self.root)

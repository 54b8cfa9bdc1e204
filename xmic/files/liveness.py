"""Whether the writer of a claim (a shard being written, a grid run being trained) still lives.

Inputs: whether the claim is from this host, its pid, the age of its heartbeat. Output: the one
rule of liveness: its heartbeat is younger than the staleness limit and, on this host, its
process runs (a pid alone is not enough: after a reboot or in a container the pid of a dead
writer may belong to another process). Also the host tag temporary names carry.
"""
from __future__ import annotations

import os
import socket


def host_tag() -> str:
    """This host's name as used in temporary and claim file names (no dots: they split fields)."""
    return socket.gethostname().replace(".", "_")[:40]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writer_alive(same_host: bool, pid: int | None, age_s: float, stale_after_s: float) -> bool:
    """The one rule of a claim's liveness: its heartbeat (the claim file's mtime) is younger
    than ``stale_after_s`` and, on this host, its process runs."""
    if age_s >= stale_after_s:
        return False
    return not same_host or (isinstance(pid, int) and pid_alive(pid))

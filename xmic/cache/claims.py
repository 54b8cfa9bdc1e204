"""Running claims of a cache: which shards a live writer is producing right now.

Inputs: a cache root, a view and a shard. A ``ShardWriter`` takes ``shard_claim``:
``views/VIEW/.running/SHARD.HOST.PID.RAND`` (the claim protocol of ``xmic.files.claims``: JSON
with host, pid, job id from the Slurm/submitit environment, start time; its heartbeat refreshed
on a timer) when it starts, and releases it when it commits or fails. Outputs of
``live_claims``: shard -> claim for the claims whose writer is alive (``files.claims.alive``);
``reap_dead_claims`` removes this host's dead ones. Claims of killed writers are ignored, never
trusted. The file name carries shard, host and pid, so a claim whose body cannot be read still
says whose it was.
"""
from __future__ import annotations

import os
from pathlib import Path

from xmic.cache.paths import RUNNING, view_dir
from xmic.files.atomic import make_dirs, remove_file, tmp_name
from xmic.files.claims import Claim, alive, read
from xmic.files.liveness import host_tag


def shard_claim(root: Path, view: str, shard: str) -> Claim:
    """This process's claim that it is writing ``shard`` of ``view`` (a unique file: several
    writers of one shard may each hold one; the commit decides between them)."""
    root = Path(root)
    d = make_dirs(view_dir(root, view) / RUNNING, root)
    return Claim.take(d / tmp_name(shard), root, shard=shard, view=view)


def _parse(name: str) -> tuple[str, str, int] | None:
    """(shard, host, pid) from a claim's file name ``SHARD.HOST.PID.RAND``, or None."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def _claims(root: Path, view: str, shard: str | None = None):
    """(shard, path, body with host and pid, heartbeat age) of each claim file of ``view``."""
    d = view_dir(root, view) / RUNNING
    if not d.is_dir():
        return
    with os.scandir(d) as it:
        names = [e.name for e in it]
    for name in names:
        who = _parse(name)
        if who is None or shard not in (None, who[0]):
            continue
        body, age = read(d / name)
        if body is None:
            continue  # released while we looked
        yield who[0], d / name, {"host": who[1], "pid": who[2], **body}, age


def reap_dead_claims(root: Path, view: str) -> int:
    """Remove the claims of writers on this host whose process is gone (killed, Ctrl-C'd before
    they could clean up) or whose heartbeat is stale (its pid now another process's); claims
    of other hosts are left to age out. Returns how many."""
    n = 0
    for _, path, body, age in _claims(root, view):
        if path.name.rsplit(".", 3)[1] == host_tag() and not alive(body, age):
            remove_file(path, Path(root))
            n += 1
    return n


def live_claims(root: Path, view: str, shard: str | None = None) -> dict[str, dict]:
    """Shard -> claim (with ``age_s``) of every writer of ``view`` that is still alive (only
    those of ``shard`` when given)."""
    return {s: {**body, "age_s": round(age, 1)} for s, _, body, age in _claims(root, view, shard)
            if alive(body, age)}

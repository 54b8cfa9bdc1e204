"""Committing extracted shards: one writer thread, and the checks a commit must pass.

Inputs: the ``ShardWriter``s of one shard (every view), and for ``same_inputs`` the cache root,
a split and the plan entry it was encoded from. Outputs: ``CommitQueue`` commits shards in a
thread while the next one encodes (``drain`` waits for them; a full disk is seen between
shards); ``commit_all`` commits every view of a shard, recording a failed view with its own
error, and raises ``CommittedElsewhere`` when another process committed the shard first (two
runs on one cache: nothing is lost, and it is not counted as extracted here); ``same_inputs``
is the writers' ``still_valid`` check: a shard whose split was planned again from other inputs
while it was encoded is not committed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from xmic.cache import ShardWriter
from xmic.cache.writer import disk_full
from xmic.config import XmicError
from xmic.extract.plan_record import ExtractPlan


def same_inputs(root: Path, split: str, info):
    """() -> why a shard of ``split`` encoded from ``info``'s inputs must not be committed: the
    split was planned again from other inputs meanwhile (``extract plan --inputs``)."""
    def check():
        now = ExtractPlan.load(root).splits.get(split)
        was = info.inputs()
        changed = [k for k, v in was.items() if now is None or now.inputs()[k] != v]
        if changed:
            return (f"split {split} was planned again from other inputs while it was encoded "
                    f"({', '.join(changed)} changed); run `xmic extract run` again")
        return None
    return check


class CommittedElsewhere(XmicError):
    """Another process committed the shard first (two runs on one cache): nothing is lost."""


def commit_all(writers: list[ShardWriter], stats: dict) -> None:
    """Commit every view's writer of one shard; a view whose commit fails is recorded failed
    with its own error, the other views still commit; the first error is raised at the end
    (``CommittedElsewhere`` when another process had committed every view first)."""
    first, lost = None, 0
    for w in writers:  # each marker adds write_s, the writer's own time
        try:
            lost += not w.commit(stats)
        except Exception as e:
            w.record_failure(e)
            first = first or e
    if first is not None:
        raise first
    if lost == len(writers):
        raise CommittedElsewhere(f"shard {writers[0].shard} was committed by another process")


class CommitQueue:
    """One writer thread: a shard commits while the next one encodes. ``drain`` waits for
    the commits in flight, so a job stopped by a signal loses at most the shard it encodes."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xmic-writer")
        self._futures: list = []

    def submit(self, writers: list[ShardWriter], stats: dict) -> None:
        self._futures.append(self._pool.submit(commit_all, writers, stats))

    def disk_full(self) -> BaseException | None:
        """The error of a finished commit that found the disk full (checked between shards)."""
        for f in self._futures:
            if f.done() and f.exception() is not None and disk_full(f.exception()):
                return f.exception()
        return None

    def drain(self, timeout: float | None = None) -> list[BaseException]:
        done, _ = wait(self._futures, timeout=timeout)
        return [f.exception() for f in done if f.exception() is not None]

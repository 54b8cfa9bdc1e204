"""The callable each array task runs: extract a group of shards, preemption-safe.

Input (pickled by submitit): a cache folder, the resolved extraction config (a dict) and, per
call, the names of the shards this task owns. Output: the extraction summary (submitit keeps it
as the job's result); the shards themselves land in the cache.

Faults: shards commit one by one, so a requeued task skips the committed ones and resumes with
the first uncommitted shard. On USR2 (time limit near, or preemption with ``--signal``)
submitit calls ``checkpoint``: the commit in flight is drained and the same call is requeued.
On SIGTERM (``scontrol requeue``, ``scancel``, preemption without a warning signal) the commit in
flight is drained and the process exits at once; Slurm requeues or cancels it. Either way at
most the shard being encoded is redone. A shard that raises is marked failed and the others go
on; the task then raises, so the scheduler shows it failed too.
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import submitit

from xmic.config import XmicError, from_dict
from xmic.extract.config import ExtractConfig
from xmic.extract.commits import CommitQueue
from xmic.extract.pipeline import run_shards


class ShardsFailed(XmicError):
    """Shards of a job's task failed; each one's reason is recorded in the cache."""


log = logging.getLogger("xmic.slurm")
DRAIN_TIMEOUT_S = 60.0


class ShardTask(submitit.helpers.Checkpointable):
    def __init__(self, cache_dir: str, extract_config: dict):
        self.cache_dir = str(cache_dir)
        self.extract_config = dict(extract_config)
        self._commits: CommitQueue | None = None

    def __getstate__(self):  # the commit queue holds a thread: never pickled
        return {"cache_dir": self.cache_dir, "extract_config": self.extract_config}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._commits = None

    def __call__(self, shards: list[str]) -> dict:
        cfg = from_dict(ExtractConfig, self.extract_config, "extract config")
        self._commits = CommitQueue()
        if _in_managed_job():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        summary = run_shards(Path(self.cache_dir), cfg, list(shards), commits=self._commits,
                             echo=lambda m: print(m, flush=True))
        if summary.shards_failed:
            raise ShardsFailed(f"{summary.shards_failed} of {len(shards)} shard(s) failed: "
                               + "; ".join(summary.failures[:5]))
        return summary.to_json()

    def _drain(self) -> None:
        if self._commits is not None:
            errors = self._commits.drain(DRAIN_TIMEOUT_S)
            print(f"xmic: drained commits in flight ({len(errors)} failed)", flush=True)

    def _on_sigterm(self, signum, frame):
        self._drain()
        print("xmic: SIGTERM: committed shards are kept; a requeued task resumes with the "
              "first uncommitted shard", flush=True)
        os._exit(143)

    def checkpoint(self, shards: list[str]):
        """Called by submitit on USR2 before it requeues this task."""
        self._drain()
        print("xmic: checkpoint: requeueing; committed shards are kept", flush=True)
        return submitit.helpers.DelayedSubmission(ShardTask(self.cache_dir, self.extract_config),
                                                  shards)


def _in_managed_job() -> bool:
    """True inside a task that submitit started as a process of its own (slurm or local); the
    debug executor runs in the caller's process, whose signals stay the caller's."""
    return os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "local")

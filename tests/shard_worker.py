"""Helper process for crash tests: writes every shard of a generated cache, optionally hanging at
a chosen point (after it touched READY) so the test can SIGKILL it there.

usage: python shard_worker.py ROOT BACKEND HANG_AT READY   (HANG_AT: none|data|marker|slow)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import xmic.cache.writer as writer_mod  # noqa: E402
from helpers import fill_cache  # noqa: E402


def hang(ready: Path):
    ready.touch()
    time.sleep(600)


def main():
    root, backend, hang_at, ready = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    calls = {"n": 0}
    if hang_at == "data":  # die with half the data written in the temporary folder
        real = writer_mod.write_array

        def write_array(*a, **k):
            calls["n"] += 1
            path = real(*a, **k)
            if calls["n"] == 3:
                hang(ready)
            return path
        writer_mod.write_array = write_array
    elif hang_at == "marker":  # die after the marker is written, before the rename
        real_commit = writer_mod.commit_dir

        def commit_dir(*a, **k):
            calls["n"] += 1
            if calls["n"] == 3:
                hang(ready)
            return real_commit(*a, **k)
        writer_mod.commit_dir = commit_dir
    elif hang_at == "slow":  # the test kills at a random moment
        real = writer_mod.write_array

        def write_array(*a, **k):
            time.sleep(0.02)
            return real(*a, **k)
        writer_mod.write_array = write_array
        ready.touch()
    fill_cache(Path(root), backend=backend, n=24, dim=32, shard_segments=3, resume=True)


if __name__ == "__main__":
    main()

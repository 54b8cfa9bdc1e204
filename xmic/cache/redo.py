"""Work redone: committed shards moved aside so that they are extracted again.

Inputs: a cache root, views and shard names. ``supersede`` moves each view's committed shard to
``views/VIEW/.superseded/SHARD.STAMP`` (kept, never deleted: the user removes them once the redo
is checked), after which the shard is pending in every command. Used by ``xmic extract run
--redo-failed`` and ``xmic slurm retry`` for shards holding failed segments, and by ``xmic
extract plan --invalidate`` when a split is planned again from other inputs. A crash between
two moves leaves some views pending and others committed: the next run redoes the pending ones.
"""
from __future__ import annotations

import time
from pathlib import Path

from xmic.cache.paths import SUPERSEDED, shard_dir, view_dir
from xmic.files.atomic import fsync_dir, make_dirs, rename


def supersede(cache_root: Path, views: list[str], shard: str) -> list[str]:
    """Move ``shard``'s committed folder of each view aside; returns the views moved."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = []
    for v in views:
        src = shard_dir(cache_root, v, shard)
        if src.is_dir() and not src.is_symlink():
            dst = view_dir(cache_root, v) / SUPERSEDED / f"{shard}.{stamp}"
            n = 1
            while dst.exists():  # twice in one second
                dst, n = dst.with_name(f"{shard}.{stamp}-{n}"), n + 1
            make_dirs(dst.parent, cache_root)
            rename(src, dst, cache_root)
            fsync_dir(src.parent)
            moved.append(v)
    return moved

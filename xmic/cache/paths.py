"""Paths inside a cache folder: every file and folder name of the layout, written once.

Inputs: a cache root and names (view, shard, vocabulary). Outputs: paths that are checked to stay
inside the root and not to pass through a link planted there. Writing them atomically is
``atomic_files``'s job.

Layout (docs/cache-format.md is the reference):
    ROOT/cache.json                          format, dataset, backend, dtype
    ROOT/config.yaml                         resolved cache config
    ROOT/segments.parquet                    the plan: one row per segment with its shard
    ROOT/index.parquet                       plan + committed shard rows (derived, rebuilt on demand)
    ROOT/views/VIEW/view.json                width, dtype, fingerprint of the view
    ROOT/views/VIEW/SHARD/                   one committed shard: data.zarr | data.h5, rows.parquet,
                                             marker.json (written last, before the folder's rename)
    ROOT/views/VIEW/SHARD.failed.json        last failure of a shard that has no commit
    ROOT/views/VIEW/.tmp/                    shards being written
    ROOT/views/VIEW/.attempts/SHARD.log      one line per attempt to write the shard
    ROOT/views/VIEW/.running/SHARD.HOST.PID.X claim of a live writer (heartbeat: its mtime)
    ROOT/views/VIEW/.progress.jsonl          one line per commit (stats), for fast status
    ROOT/vocab/NAME/vocab.json, embeddings.npy
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from xmic.cache.atomic_files import guard, host_tag
from xmic.config import XmicError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
CACHE_JSON = "cache.json"
CONFIG_YAML = "config.yaml"
SEGMENTS = "segments.parquet"
INDEX = "index.parquet"
MARKER = "marker.json"
ROWS = "rows.parquet"
PROGRESS = ".progress.jsonl"
TMP = ".tmp"
ATTEMPTS = ".attempts"
RUNNING = ".running"
SUPERSEDED = ".superseded"
FAILED_SUFFIX = ".failed.json"
PLAN_FILE = "extract_plan.json"             # extraction: dataset kind, media root, boxes, classes
SUBMISSIONS = "slurm/submissions.jsonl"     # one line per Slurm submission
SLURM_LOGS = "slurm/logs"
DATA = {"zarr": "data.zarr", "hdf5": "data.h5"}
H5_DATASET = "embeddings"  # the one dataset of an HDF5 shard


class CacheError(XmicError):
    pass


def check_name(kind: str, name: str) -> str:
    """View, shard and vocabulary names become path parts: keep them plain."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise CacheError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.' "
                         "(at most 128, not starting with '.')")
    return name


def inside(root: Path, *parts: str) -> Path:
    """``root/parts``, refusing anything that escapes ``root`` (absolute parts, ``..``) or goes
    through a symbolic link planted inside it."""
    root = Path(root).resolve()
    if any(Path(x).is_absolute() or ".." in Path(x).parts for x in parts):
        raise CacheError(f"path {'/'.join(parts)!r} points outside the cache {root}; "
                         "the index or config holding it is corrupt or hostile")
    return guard(root.joinpath(*parts), root)


def view_dir(root: Path, view: str) -> Path:
    return inside(root, "views", check_name("view", view))


def shard_dir(root: Path, view: str, shard: str) -> Path:
    return inside(root, "views", check_name("view", view), check_name("shard", shard))


def failed_path(root: Path, view: str, shard: str) -> Path:
    """The last failure of a shard that has no commit."""
    return inside(root, "views", check_name("view", view), check_name("shard", shard) + FAILED_SUFFIX)


def attempts_log(root: Path, view: str, shard: str) -> Path:
    """One line per attempt to write the shard (host, pid, time)."""
    return inside(root, "views", check_name("view", view), ATTEMPTS, check_name("shard", shard) + ".log")


def count_attempts(root: Path, view: str, shard: str) -> int:
    """How many times a writer started on the shard (0 when none did)."""
    try:
        with open(attempts_log(root, view, shard), "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def vocab_dir(root: Path, name: str) -> Path:
    return inside(root, "vocab", check_name("vocabulary", name))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CacheError(f"{path}: {what} is missing") from None
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: {what} is unreadable ({e})") from None
    if not isinstance(data, dict):
        raise CacheError(f"{path}: {what} is not a JSON object")
    return data


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_tmp(tmp_root: Path, stem: str | None = None) -> list[Path]:
    """Temporary folders left by dead writers on this host (other hosts' are left alone)."""
    if not tmp_root.is_dir():
        return []
    host = host_tag()
    out = []
    for p in tmp_root.iterdir():
        parts = p.name.rsplit(".", 3)
        if len(parts) != 4 or (stem is not None and parts[0] != stem):
            continue
        if parts[1] == host and parts[2].isdigit() and not pid_alive(int(parts[2])):
            out.append(p)
    return out

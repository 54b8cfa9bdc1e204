"""Paths inside a cache folder: every file and folder name of the layout, written once.

Inputs: a cache root and names (view, shard, vocabulary). Outputs: paths that are checked to stay
inside the root and not to pass through a link planted there. Writing them atomically is
``xmic.files.atomic``'s job.

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
    ROOT/archive_index/KEY.npz               member index of one frame tar (extraction; rebuilt
                                             whenever the tar's size or mtime differs)
"""
from __future__ import annotations

from pathlib import Path

from xmic.config import XmicError
from xmic.files.atomic import guard
from xmic.files.liveness import host_tag, pid_alive
from xmic.files.names import BadName, check_name
from xmic.files.json_files import BadFile, read_json

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
ARCHIVE_INDEX = "archive_index"             # extraction: frame tars' member indexes, built at plan
SUBMISSIONS = "slurm/submissions.jsonl"     # one line per Slurm submission
SLURM_LOGS = "slurm/logs"
DATA = {"zarr": "data.zarr", "hdf5": "data.h5"}
VIEW_JSON = "view.json"            # views/VIEW/: width, dtype, fingerprint of the view
VOCAB_JSON = "vocab.json"          # vocab/NAME/: classes, prompt names, fingerprint, checksum
EMBEDDINGS = "embeddings.npy"      # vocab/NAME/: the text embeddings [C, D]
LOCK = ".lock"                     # the cache's lock for plan and view-record changes
H5_DATASET = "embeddings"  # the one dataset of an HDF5 shard


class CacheError(XmicError):
    pass


def check_cache_name(kind: str, name: str) -> str:
    """``files.names.check_name`` for names inside a cache: a bad one is a ``CacheError``."""
    try:
        return check_name(kind, name)
    except BadName as e:
        raise CacheError(str(e)) from None


def read_cache_json(path: Path, what: str) -> dict:
    """``files.names.read_json`` for a cache's own files: a bad one is a ``CacheError``."""
    try:
        return read_json(path, what)
    except BadFile as e:
        raise CacheError(str(e)) from None



def inside(root: Path, *parts: str) -> Path:
    """``root/parts``, refusing anything that escapes ``root`` (absolute parts, ``..``) or goes
    through a symbolic link planted inside it."""
    root = Path(root).resolve()
    if any(Path(x).is_absolute() or ".." in Path(x).parts for x in parts):
        raise CacheError(f"path {'/'.join(parts)!r} points outside the cache {root}; "
                         "the index or config holding it is corrupt or hostile")
    return guard(root.joinpath(*parts), root)


def view_dir(root: Path, view: str) -> Path:
    return inside(root, "views", check_cache_name("view", view))


def shard_dir(root: Path, view: str, shard: str) -> Path:
    return inside(root, "views", check_cache_name("view", view), check_cache_name("shard", shard))


def failed_path(root: Path, view: str, shard: str) -> Path:
    """The last failure of a shard that has no commit."""
    return inside(root, "views", check_cache_name("view", view),
                  check_cache_name("shard", shard) + FAILED_SUFFIX)


def attempts_log(root: Path, view: str, shard: str) -> Path:
    """One line per attempt to write the shard (host, pid, time)."""
    return inside(root, "views", check_cache_name("view", view), ATTEMPTS,
                  check_cache_name("shard", shard) + ".log")


def count_attempts(root: Path, view: str, shard: str) -> int:
    """How many times a writer started on the shard (0 when none did)."""
    try:
        with open(attempts_log(root, view, shard), "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def vocab_dir(root: Path, name: str) -> Path:
    return inside(root, "vocab", check_cache_name("vocabulary", name))


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

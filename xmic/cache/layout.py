"""Paths inside a cache folder and the atomic file primitives every writer uses.

Inputs: a cache root and names (view, shard, vocabulary). Outputs: paths that are checked to stay
inside the root, plus helpers that write a file or a folder so that readers see either nothing or
the whole thing (write under a temporary name, fsync, rename, fsync the parent).

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

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from xmic.config import XmicError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
CACHE_JSON = "cache.json"
SEGMENTS = "segments.parquet"
INDEX = "index.parquet"
MARKER = "marker.json"
ROWS = "rows.parquet"
PROGRESS = ".progress.jsonl"
DATA = {"zarr": "data.zarr", "hdf5": "data.h5"}


class CacheError(XmicError):
    pass


def check_name(kind: str, name: str) -> str:
    """View, shard and vocabulary names become path parts: keep them plain."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise CacheError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.' "
                         "(at most 128, not starting with '.')")
    return name


def inside(root: Path, *parts: str) -> Path:
    """``root/parts`` resolved, refusing anything that escapes ``root`` (``..``, absolute, links)."""
    root = Path(root).resolve()
    p = root.joinpath(*parts).resolve()
    if p != root and root not in p.parents:
        raise CacheError(f"path {'/'.join(parts)!r} points outside the cache {root}; "
                         "the index or config holding it is corrupt or hostile")
    return p


def view_dir(root: Path, view: str) -> Path:
    return inside(root, "views", check_name("view", view))


def shard_dir(root: Path, view: str, shard: str) -> Path:
    return inside(root, "views", check_name("view", view), check_name("shard", shard))


def vocab_dir(root: Path, name: str) -> Path:
    return inside(root, "vocab", check_name("vocabulary", name))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under ``path`` (a zarr store is a folder of files)."""
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        return
    for dirpath, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(dirpath, name), "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def tmp_name(stem: str) -> str:
    """Temporary name that says who writes it: ``stem.HOST.PID.RANDOM``."""
    host = socket.gethostname().replace(".", "_")[:40]
    return f"{stem}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / ("." + tmp_name(path.name))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def create_json_exclusive(path: Path, obj) -> bool:
    """Create ``path`` with ``obj`` only if it does not exist (atomic link); True if we created it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / ("." + tmp_name(path.name))
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
        fsync_dir(path.parent)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


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


def commit_dir(tmp: Path, final: Path) -> bool:
    """Rename a finished temporary folder to its final name. Exactly one of several racing
    writers wins; the others get False and their folder is removed."""
    fsync_tree(tmp)
    try:
        os.rename(tmp, final)
    except OSError as e:
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise CacheError(f"cannot commit {final}: {e.strerror}") from None
    fsync_dir(final.parent)
    return True


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
    host = socket.gethostname().replace(".", "_")[:40]
    out = []
    for p in tmp_root.iterdir():
        parts = p.name.rsplit(".", 3)
        if len(parts) != 4 or (stem is not None and parts[0] != stem):
            continue
        if parts[1] == host and parts[2].isdigit() and not pid_alive(int(parts[2])):
            out.append(p)
    return out

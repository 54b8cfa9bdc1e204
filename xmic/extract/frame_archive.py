"""JPEG frames read straight out of an uncompressed tar, one archive per video (EPIC-100's
``P01/rgb_frames/P01_01.tar``), never unpacked.

Input: the archive's path and annotation frame numbers. Outputs: ``archive_index(path)`` -> an
``ArchiveIndex`` (frame numbers, data offsets and sizes of its members, int64 arrays), built by
``xmic.extract.tar_headers``, which bounds every header (never Python's ``tarfile``: hostile
headers hang it). Indexes are built once: at plan, in parallel processes
(``index_archives``), into the cache's store (``CACHE/archive_index/``, ``use_index_store``),
where every worker and every later run finds them; a stored index is used only for the very
archive version it was built from (path, size, mtime) and only when its arrays are what such a
file can hold, else it is built again. A process keeps the last ``INDEXES_KEPT`` in memory.
``read_member(path, frame)`` -> the member's bytes, read with ``os.pread`` on a per-process
descriptor (a forked DataLoader worker opens its own; no shared file offset).
Members are named as in EPIC's archives, ``./frame_0000000001.jpg`` or ``frame_0000000001.jpg``;
other members are ignored. Nothing is ever extracted or followed: an archive holding an absolute
member path or one with ``..``, a frame member that is not a regular file (a link, a device, a
FIFO, sparse) or that claims more than ``MAX_FRAME_BYTES`` is refused whole, at plan; a member
whose bytes end early is a truncated archive (``ArchiveError`` names the archive and the member). The user's archive is opened read-only.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmic.config import XmicError
from xmic.extract.tar_headers import TarHeaderError, members

MEMBER = re.compile(r"(?:\./)?frame_(\d{10})\.jpg")
MEMBER_NAME = "./frame_{:010d}.jpg"  # EPIC's own spelling, in messages


class ArchiveError(XmicError):
    pass


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.replace("\\", "/").split("/")


MAX_FRAME_BYTES = 64 << 20  # a JPEG frame is at most tens of MB; more is damage or an attack


@dataclass(frozen=True)
class ArchiveIndex:
    """The JPEG members of one tar: frame numbers [n] (sorted), data offsets [n], sizes [n]
    (int64 arrays, 24 bytes a frame)."""
    frames: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def find(self, frame: int) -> tuple[int, int] | None:
        i = int(np.searchsorted(self.frames, frame))
        if i < len(self.frames) and self.frames[i] == frame:
            return int(self.offsets[i]), int(self.sizes[i])
        return None


def build_index(path: str, size: int) -> ArchiveIndex:
    """Every JPEG member of the tar at ``path``, its headers read with bounds."""
    frames, offsets, sizes = [], [], []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ArchiveError(f"{path}: cannot open the frame archive ({e.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArchiveError(f"{path}: not a regular file; a frame archive is a plain .tar")
        for m in members(fd, path, size):  # bounded headers (xmic.extract.tar_headers)
            if _unsafe(m.name):
                raise ArchiveError(f"{path}: member {m.name!r} is an absolute path or holds "
                                   "'..'; the archive is not read (nothing is extracted): "
                                   "repack it with frames only")
            hit = MEMBER.fullmatch(m.name)
            if hit is None:
                continue
            if not m.regular:
                what = "sparse file" if m.sparse else m.kind
                raise ArchiveError(f"{path}: member {m.name} is a {what}, not a regular file; "
                                   "nothing is followed: repack the archive with the JPEG files "
                                   "themselves")
            if m.size > MAX_FRAME_BYTES:
                raise ArchiveError(f"{path}: member {m.name} claims {m.size} bytes, more than a "
                                   f"frame can hold ({MAX_FRAME_BYTES >> 20} MiB); the archive is "
                                   "damaged or hostile and is not read")
            frames.append(int(hit.group(1)))
            offsets.append(m.offset)
            sizes.append(m.size)
    except TarHeaderError as e:
        raise ArchiveError(str(e)) from None
    finally:
        os.close(fd)
    frames = np.asarray(frames, np.int64)
    n = len(frames)
    _, last = np.unique(frames[::-1], return_index=True)  # a frame stored twice: its last member
    keep = n - 1 - last                                     # (as tar itself extracts it)
    return ArchiveIndex(frames[keep], np.asarray(offsets, np.int64)[keep],
                        np.asarray(sizes, np.int64)[keep])


# ---- indexes stored beside the plan (CACHE/archive_index/), reused by every worker and run ----
_STORE: list[Path | None] = [None]  # this process's store (``use_index_store``)


def use_index_store(folder: Path | None) -> None:
    """Where this process finds and keeps archive indexes (a cache's ``archive_index``)."""
    _STORE[0] = Path(folder) if folder is not None else None


def _stored_path(folder: Path, path: str) -> Path:
    return folder / (hashlib.sha256(path.encode()).hexdigest()[:32] + ".npz")


def load_stored(folder: Path, path: str, size: int, mtime_ns: int) -> ArchiveIndex | None:
    """The stored index of the archive at ``path`` when it was built from this very version of
    it (path, size, mtime) and holds what such an archive can (at most one member per 512-byte
    block, members inside the file, frames of at most ``MAX_FRAME_BYTES``); else None."""
    p = _stored_path(folder, path)
    try:
        with _stored(folder, p, size) as z:
            if z is None or _meta(z) != _version(path, size, mtime_ns):
                return None
            frames, offsets, sizes = (np.asarray(z[k], np.int64) for k in ("frames", "offsets",
                                                                         "sizes"))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None
    n = len(frames)
    if (not len(offsets) == len(sizes) == n or n > size // 512
            or (n and (offsets.min() < 512 or sizes.min() < 0 or sizes.max() > MAX_FRAME_BYTES
                       or (offsets + sizes).max() > size or frames.min() < 0
                       or (np.diff(frames) <= 0).any()))):
        return None
    return ArchiveIndex(frames, offsets, sizes)


def _version(path: str, size: int, mtime_ns: int) -> dict:
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "version": 1}


def _meta(z) -> dict:
    return json.loads(bytes(z["meta"]).decode())


@contextlib.contextmanager
def _stored(folder: Path, p: Path, size: int):
    """The open store file of an archive of ``size`` bytes, or None: no file, a link (the file
    or its folder), or more bytes than such an archive's index can take."""
    if (folder.is_symlink() or p.is_symlink() or not p.is_file()
            or p.stat().st_size > 64 + 40 * (size // 512 + 1)):
        yield None
        return
    with np.load(p, allow_pickle=False) as z:
        yield z


def is_stored(folder: Path, path: str, size: int, mtime_ns: int) -> bool:
    """An index of this very archive version is stored (its arrays are checked when used)."""
    try:
        with _stored(folder, _stored_path(folder, path), size) as z:
            return z is not None and _meta(z) == _version(path, size, mtime_ns)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return False


def store_index(folder: Path, path: str, size: int, mtime_ns: int, index: ArchiveIndex) -> None:
    """Keep ``index`` for the archive's version (written atomically, never through a link)."""
    import io
    from xmic.files.atomic import make_dirs, write_bytes_atomic
    buf = io.BytesIO()
    meta = json.dumps(_version(path, size, mtime_ns)).encode()
    np.savez(buf, meta=np.frombuffer(meta, np.uint8), frames=index.frames,
             offsets=index.offsets, sizes=index.sizes)
    make_dirs(folder, folder.parent)
    write_bytes_atomic(_stored_path(folder, path), buf.getbuffer(), folder)


INDEXES_KEPT = 8  # indexes a process holds (segments come sorted by video: a few at a time)
_indexes: OrderedDict[tuple, ArchiveIndex] = OrderedDict()


def _index(path: str, size: int, mtime_ns: int) -> ArchiveIndex:
    key = (path, size, mtime_ns)
    if key in _indexes:
        _indexes.move_to_end(key)
        return _indexes[key]
    folder = _STORE[0]
    index = load_stored(folder, path, size, mtime_ns) if folder is not None else None
    if index is None:
        index = build_index(path, size)
        if folder is not None:
            try:
                store_index(folder, path, size, mtime_ns, index)
            except (OSError, XmicError):  # read-only, or a link planted there (never written
                pass                      # through): the index is rebuilt next time
    _indexes[key] = index
    while len(_indexes) > INDEXES_KEPT:
        _indexes.popitem(last=False)
    return index


def clear_indexes() -> None:
    """Forget the indexes this process holds (the store keeps its own)."""
    _indexes.clear()


def held_indexes() -> int:
    return len(_indexes)


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: frame archive not found") from None


def archive_index(path: Path, st: os.stat_result | None = None) -> ArchiveIndex:
    """The archive's member index; built once per archive version, kept in this process's
    store when it has one (``st``: the archive's stat, when the caller has it)."""
    st = st or _stat(path)
    return _index(str(path), st.st_size, st.st_mtime_ns)


def index_archives(paths: list[Path], folder: Path, workers: int = 4, progress=None) -> None:
    """Build and store the index of every archive in ``paths`` not stored yet (at plan), in
    ``workers`` processes; ``progress(n)`` is told each archive done."""
    todo = []
    for p in paths:
        st = _stat(p)
        if not is_stored(folder, str(p), st.st_size, st.st_mtime_ns):  # meta only: no arrays
            todo.append((str(p), st.st_size, st.st_mtime_ns))
        elif progress:
            progress(1)
    if not todo:
        return
    if workers <= 1 or len(todo) == 1:
        for args in todo:
            store_index(folder, args[0], args[1], args[2], build_index(args[0], args[1]))
            if progress:
                progress(1)
        return
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for _ in pool.map(_index_one, [(folder, *a) for a in todo]):
            if progress:
                progress(1)


def _index_one(args) -> None:
    folder, path, size, mtime_ns = args
    store_index(folder, path, size, mtime_ns, build_index(path, size))


def archive_frames(path: Path) -> np.ndarray:
    """Sorted frame numbers the archive holds (the coverage check at plan time)."""
    return archive_index(path).frames


OPEN_ARCHIVES = 16  # descriptors a process keeps open (a split reads hundreds of archives)
_descriptors: OrderedDict[tuple[int, str], int] = OrderedDict()  # (pid, path) -> descriptor


def _fd(path: str, st: os.stat_result) -> int:
    """A read-only descriptor of ``path`` (whose stat is ``st``) for this process, the least
    recently used closed; reopened when another file was renamed over the path (its index is
    rebuilt too)."""
    key = (os.getpid(), path)
    if key in _descriptors:
        fd = _descriptors[key]
        try:
            same = os.path.samestat(os.fstat(fd), st)
        except OSError:
            same = False
        if same:
            _descriptors.move_to_end(key)
            return fd
        os.close(_descriptors.pop(key))
    for stale in [k for k in _descriptors if k[0] != key[0]]:  # copies inherited at a fork:
        os.close(_descriptors.pop(stale))  # closing them here leaves the parent's open
    while len(_descriptors) >= OPEN_ARCHIVES:
        os.close(_descriptors.popitem(last=False)[1])
    _descriptors[key] = os.open(path, os.O_RDONLY)
    return _descriptors[key]


def read_member(path: Path, frame: int) -> bytes:
    """The bytes of one frame's member; ``ArchiveError`` naming archive and member."""
    st = _stat(path)  # one stat: the index's version and the descriptor's file
    loc = archive_index(path, st).find(frame)
    name = MEMBER_NAME.format(frame)
    if loc is None:
        raise ArchiveError(f"{path}: member {name} (frame {frame}) is missing from the archive")
    offset, size = loc
    data = os.pread(_fd(str(path), st), size, offset)
    if len(data) != size:
        raise ArchiveError(f"{path}: member {name} (frame {frame}) is truncated ({len(data)} of "
                           f"{size} bytes); the archive was cut short: copy it again")
    return data

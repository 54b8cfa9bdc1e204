"""JPEG frames read straight out of an uncompressed tar, one archive per video (EPIC-100's
``P01/rgb_frames/P01_01.tar``), never unpacked.

Input: the archive's path and annotation frame numbers. Outputs: ``archive_index(path)`` -> frame
number -> (data offset, size) of its member, built once per archive and process (keyed by the
file's size and mtime, so a replaced archive is indexed again) by ``xmic.extract.tar_headers``,
which bounds every header (never Python's ``tarfile``: hostile headers hang it); ``read_member(path, frame)`` -> the member's bytes, read with ``os.pread`` on a
per-process descriptor (a forked DataLoader worker opens its own; no shared file offset).
Members are named as in EPIC's archives, ``./frame_0000000001.jpg`` or ``frame_0000000001.jpg``;
other members are ignored. Nothing is ever extracted or followed: an archive holding an absolute
member path or one with ``..``, a frame member that is not a regular file (a link, a device, a
FIFO, sparse) or that claims more than ``MAX_FRAME_BYTES`` is refused whole, at plan; a member
whose bytes end early is a truncated archive (``ArchiveError`` names the archive and the member). The user's archive is opened read-only.
"""
from __future__ import annotations

import functools
import os
import re
import stat
from collections import OrderedDict
from pathlib import Path

from xmic.config import XmicError
from xmic.extract.tar_headers import TarHeaderError, members

MEMBER = re.compile(r"(?:\./)?frame_(\d{10})\.jpg")
MEMBER_NAME = "./frame_{:010d}.jpg"  # EPIC's own spelling, in messages


class ArchiveError(XmicError):
    pass


def _unsafe(name: str) -> bool:
    return name.startswith("/") or ".." in name.replace("\\", "/").split("/")


MAX_FRAME_BYTES = 64 << 20  # a JPEG frame is at most tens of MB; more is damage or an attack


@functools.lru_cache(maxsize=8)  # segments come sorted by video: a few archives at a time
def _index(path: str, size: int, mtime_ns: int) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
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
            out[int(hit.group(1))] = (m.offset, m.size)
    except TarHeaderError as e:
        raise ArchiveError(str(e)) from None
    finally:
        os.close(fd)
    return out


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: frame archive not found") from None


def archive_index(path: Path, st: os.stat_result | None = None) -> dict[int, tuple[int, int]]:
    """Frame number -> (offset, size) of its JPEG member; built once per archive version
    (``st``: the archive's stat, when the caller has it)."""
    st = st or _stat(path)
    return _index(str(path), st.st_size, st.st_mtime_ns)


def archive_frames(path: Path) -> list[int]:
    """Sorted frame numbers the archive holds (the coverage check at plan time)."""
    return sorted(archive_index(path))


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
    loc = archive_index(path, st).get(frame)
    name = MEMBER_NAME.format(frame)
    if loc is None:
        raise ArchiveError(f"{path}: member {name} (frame {frame}) is missing from the archive")
    offset, size = loc
    data = os.pread(_fd(str(path), st), size, offset)
    if len(data) != size:
        raise ArchiveError(f"{path}: member {name} (frame {frame}) is truncated ({len(data)} of "
                           f"{size} bytes); the archive was cut short: copy it again")
    return data

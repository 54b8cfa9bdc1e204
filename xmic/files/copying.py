"""Streamed file copies that hash what they copy.

Input: a source file, a new destination path and the folder that owns the destination (its
``root``, as in ``files.atomic``). Output: the copy, fsynced, and ``(bytes, sha256)`` of what was
written. The destination is created new (``O_EXCL``), never through a link (``guard``); the
source is opened without following a link unless the caller reads a store whose files are links
by design (a Hugging Face snapshot's files point into its blob store). Memory: one buffer.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from xmic.files.atomic import CLOEXEC, NOFOLLOW, UnsafePathError, _write_fd, guard

BUFFER = 4 << 20


def copy_hashed(src: Path, dst: Path, root: Path, follow_source_link: bool = False) -> tuple[int, str]:
    """Copy ``src`` to the new file ``dst`` below ``root``; returns (bytes, sha256 hex)."""
    guard(dst, root)
    flags = os.O_RDONLY | CLOEXEC | (0 if follow_source_link else NOFOLLOW)
    try:
        fin = os.open(src, flags)
    except OSError:
        if os.path.islink(src) and not follow_source_link:
            raise UnsafePathError(f"{src}: is a symbolic link; refusing to copy through it") from None
        raise
    h, size = hashlib.sha256(), 0
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
        try:
            while chunk := os.read(fin, BUFFER):
                h.update(chunk)
                size += len(chunk)
                _write_fd(fout, chunk)
            os.fsync(fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    return size, h.hexdigest()


def relative_parts(rel: str) -> tuple[str, ...]:
    """The parts of a manifest's relative path, refusing absolute paths, ``..``, empty parts and
    backslashes (a published file may name nothing outside its folder)."""
    p = Path(rel)
    if (not rel or rel.startswith("/") or "\\" in rel or p.is_absolute()
            or any(x in ("", ".", "..") for x in rel.split("/"))):
        raise UnsafePathError(f"{rel!r}: not a plain relative path inside the folder")
    return tuple(rel.split("/"))

"""Every write, append, rename and delete that xmic does in its own folders goes through here.

Inputs: a target path and the folder that owns it (``root``: a cache, a run, a grid; the user
chose it, so it may itself be a link). Outputs: files and folders written so that readers see
nothing or the whole thing (temporary name, fsync, rename, fsync the parent), and never through a
symbolic link planted below ``root``: every component between ``root`` and the target is checked
with ``lstat`` and files are opened with ``O_NOFOLLOW``; a link is refused with its path named
(``UnsafePathError``). Data reaches the disk only through ordinary ``os.write`` calls, so a full
disk raises ``OSError(ENOSPC)`` instead of crashing a library (HDF5 images are built in memory by
the caller and written here).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path

from xmic.config import XmicError
from xmic.files.liveness import host_tag


class CommitError(XmicError):
    """A finished temporary folder that cannot be renamed to its final name."""


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePathError(XmicError):
    """A path xmic would write, rename or delete is a symbolic link, or leaves its folder."""


def tmp_name(stem: str) -> str:
    """Temporary name that says who writes it: ``stem.HOST.PID.RANDOM``."""
    return f"{stem}.{host_tag()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def caused_by(e: BaseException | None, code: int, words: str) -> bool:
    """True when ``e``, or what caused it (zarr, h5py and torch wrap OS errors), is the OS
    error ``code`` (e.g. ENOSPC), or says ``words`` (its strerror, where only a message is left)."""
    while e is not None:
        if (isinstance(e, OSError) and e.errno == code) or words in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def guard(path: Path, root: Path | None = None) -> Path:
    """``path`` unchanged, after checking that it lies below ``root`` (default: its parent) and
    that no existing component from ``root`` (excluded) to ``path`` (included) is a link."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise UnsafePathError(f"{path}: lies outside {root}; refusing to write there") from None
    if ".." in rel.parts:
        raise UnsafePathError(f"{path}: leaves {root} through '..'; refusing to write there")
    p = root
    for part in rel.parts:
        p = p / part
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            break  # what does not exist yet cannot be a link; we create it ourselves
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"{p}: is a symbolic link inside {root}; xmic never writes, "
                                  "renames or deletes through links in its folders: remove the "
                                  "link (or the folder) and run again")
    return path


def refuse_links_below(root: Path, inward_ok: bool = False) -> None:
    """Refuse a folder we are about to fill (and partly overwrite) when any path below it is a
    symbolic link; the folder itself may be one (the user chose it). ``inward_ok``: links whose
    target stays inside the folder are accepted (a tool's own, e.g. submitit's)."""
    root = Path(root)
    if not root.is_dir():
        return
    inside = os.path.realpath(root)
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                continue
            if inward_ok and os.path.commonpath([inside, os.path.realpath(p)]) == inside:
                continue
            raise UnsafePathError(f"{p}: is a symbolic link inside {root}"
                                  + (" pointing out of it" if inward_ok else "")
                                  + "; xmic never writes through links in its folders: remove it")


def make_dirs(path: Path, root: Path | None = None) -> Path:
    """``mkdir -p`` below ``root``, refusing links on the way (checked before and after)."""
    guard(path, root)
    Path(path).mkdir(parents=True, exist_ok=True)
    return guard(path, root)


def _write_fd(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_new(path: Path, data, root: Path | None = None, sync: bool = True) -> None:
    """Create ``path`` (it must not exist) with ``data`` (bytes-like), with plain ``os.write``."""
    guard(path, root)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
    try:
        _write_fd(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def write_bytes_atomic(path: Path, data, root: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (readers see the old or the new file)."""
    path = Path(path)
    make_dirs(path.parent, root if root is not None else path.parent)
    guard(path, root)
    tmp = path.parent / ("." + tmp_name(path.name))
    try:
        write_new(tmp, data, path.parent)
        os.replace(tmp, path)  # rename replaces a link itself, never what it points to
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, root: Path | None = None) -> None:
    write_bytes_atomic(path, text.encode(), root)


def write_json_atomic(path: Path, obj, root: Path | None = None) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), root)


def create_json_exclusive(path: Path, obj, root: Path | None = None) -> bool:
    """Create ``path`` with ``obj`` only if it does not exist (atomic link); True if we created it."""
    path = Path(path)
    make_dirs(path.parent, root if root is not None else path.parent)
    guard(path, root)
    tmp = path.parent / ("." + tmp_name(path.name))
    write_new(tmp, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), path.parent)
    try:
        os.link(tmp, path, follow_symlinks=False)
        fsync_dir(path.parent)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def append_line(path: Path, line: str, root: Path | None = None) -> None:
    """Append one whole line (``O_APPEND``: concurrent lines of one write do not interleave)."""
    path = Path(path)
    make_dirs(path.parent, root if root is not None else path.parent)
    guard(path, root)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
    try:
        _write_fd(fd, line.encode())
    finally:
        os.close(fd)


def remove_file(path: Path, root: Path | None = None, missing_ok: bool = True) -> None:
    """Unlink ``path`` (a link planted in its place is refused, not followed or removed)."""
    guard(path, root)
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def remove_tree(path: Path, root: Path | None = None, missing_ok: bool = True) -> None:
    """``rm -r path``; links inside are removed as links (shutil's fd-based rmtree), a link at
    ``path`` or above it (below ``root``) is refused."""
    guard(path, root)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def rename(src: Path, dst: Path, root: Path | None = None) -> None:
    """Rename below one ``root``; both ends are checked for links."""
    guard(src, root)
    guard(dst, root)
    os.rename(src, dst)


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under ``path`` (a zarr store is a folder of files)."""
    if not Path(path).is_dir():
        _fsync_file(str(path))
        return
    for dirpath, _, files in os.walk(path):
        for name in files:
            _fsync_file(os.path.join(dirpath, name))
        fsync_dir(Path(dirpath))


def commit_dir(tmp: Path, final: Path, root: Path | None = None) -> bool:
    """Rename a finished temporary folder to its final name. Exactly one of several racing
    writers wins; the others get False and their folder is removed."""
    guard(tmp, root)
    guard(final, root)
    fsync_tree(tmp)
    try:
        os.rename(tmp, final)
    except OSError as e:
        if os.path.lexists(final) and e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR):
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        if e.errno == errno.ENOSPC:
            raise
        raise CommitError(f"cannot commit {final}: {e.strerror}") from None
    fsync_dir(final.parent)
    return True

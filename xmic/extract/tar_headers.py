"""The member headers of an uncompressed tar, read with bounds (never Python's ``tarfile``).

Input: a file descriptor and the archive's path (for messages). Output: ``members(fd, path)`` ->
``Member`` (name, type, data offset, size, sparse) for every header, in order. Every header moves
the offset forward by at least one 512-byte block, so a hostile size field cannot loop (Python
3.11's ``tarfile`` loops forever on a negative size after the first member, CVE-2025-8194); a
POSIX extended (pax) header or a GNU long name is read only up to ``MAX_EXTENDED`` bytes and its
records are parsed in one pass (``tarfile`` spends quadratic time on a pax header of digits,
CVE-2024-6232); a size field is octal or base-256, never negative. A damaged header (bad
checksum), a negative or oversized extended header, or a malformed pax record raises
``TarHeaderError`` naming the archive and the offset. Sizes are returned as stated: callers
bound members by what they expect (a frame is tens of MB at most).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from xmic.config import XmicError

BLOCK = 512
MAX_EXTENDED = 1 << 20     # a pax header or a GNU long name: 1 MiB at most
REGULAR = (b"0", b"\0", b"7")
TYPES = {b"1": "hard link", b"2": "symbolic link", b"3": "character device",
         b"4": "block device", b"5": "folder", b"6": "FIFO", b"S": "sparse file"}


class TarHeaderError(XmicError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    kind: str         # "file", or what else it is (TYPES)
    offset: int       # of its data
    size: int         # as stated by the header (or its pax record)
    sparse: bool = False

    @property
    def regular(self) -> bool:
        return self.kind == "file" and not self.sparse


def _number(field: bytes, path, at: int, what: str) -> int:
    """An octal (or GNU base-256) header number; a negative one is refused."""
    if field[:1] and field[0] & 0x80:
        if field[0] == 0xFF:
            raise TarHeaderError(f"{path}: the header at byte {at} gives a negative {what}; the "
                                 "archive is damaged or hostile and is not read")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarHeaderError(f"{path}: the header at byte {at} has a {what} field {text[:20]!r} "
                             "that is not a number: not a readable uncompressed tar") from None


def _checksum_ok(block: bytes, path, at: int) -> bool:
    stated = _number(block[148:156], path, at, "checksum")
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b >= 128)
    return stated in (unsigned, signed)


def _read(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


def _pax(data: bytes, path, at: int) -> dict[str, str]:
    """``LENGTH key=value\\n`` records in one pass; any malformed record refuses the archive."""
    out, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos, pos + 20)  # a length has at most 19 digits
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise TarHeaderError(f"{path}: the extended header at byte {at} holds a malformed "
                                 "record; the archive is damaged or hostile and is not read")
        end = pos + int(digits)
        if end <= space or end > len(data) or data[end - 1:end] != b"\n":
            raise TarHeaderError(f"{path}: the extended header at byte {at} holds a record whose "
                                 "length does not fit it; the archive is not read")
        key, sep, value = data[space + 1:end - 1].partition(b"=")
        if not sep:
            raise TarHeaderError(f"{path}: the extended header at byte {at} holds a record "
                                 "without '='; the archive is not read")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos = end
    return out


def members(fd: int, path, file_size: int):
    """Every member header of the archive open on ``fd`` (``file_size`` bytes), in order."""
    at, pending = 0, {}
    while at + BLOCK <= file_size:
        block = _read(fd, BLOCK, at)
        if len(block) < BLOCK or block == bytes(BLOCK):
            return  # the end-of-archive blocks (or a file cut at a header)
        if not _checksum_ok(block, path, at):
            raise TarHeaderError(f"{path}: the header at byte {at} is damaged (checksum): not a "
                                 "readable uncompressed tar")
        size = _number(block[124:136], path, at, "size")
        kind, data_at = block[156:157], at + BLOCK
        following = data_at + -(-size // BLOCK) * BLOCK  # > at: every header moves forward
        if kind in (b"x", b"g", b"L", b"K"):  # extended headers: about the next member
            if size > MAX_EXTENDED:
                raise TarHeaderError(f"{path}: the extended header at byte {at} claims {size} "
                                     f"bytes (at most {MAX_EXTENDED} are read); not read")
            data = _read(fd, size, data_at)
            if kind == b"x":
                pending.update(_pax(data, path, at))
            elif kind == b"L":
                pending["path"] = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            at = following
            continue
        name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if block[257:265] == b"ustar\x0000" and block[345:346] != b"\0" and "path" not in pending:
            prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            name = f"{prefix}/{name}" if prefix else name
        name = pending.get("path", name)
        if "size" in pending:
            text = pending["size"]
            if not text.isdigit():
                raise TarHeaderError(f"{path}: the extended header before byte {at} gives size "
                                     f"{text[:20]!r}; not read")
            size = int(text)
            following = data_at + -(-size // BLOCK) * BLOCK
        sparse = kind == b"S" or any(k.startswith("GNU.sparse") for k in pending)
        yield Member(name, "file" if kind in REGULAR else TYPES.get(kind, "other"), data_at, size,
                     sparse)
        pending, at = {}, following

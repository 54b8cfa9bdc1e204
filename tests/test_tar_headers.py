"""Frame tars are read by a bounded header reader: it lists what Python's ``tarfile`` lists on
every archive ``tarfile`` writes (ustar, GNU, pax; long names), and refuses in one line, in
bounded time and memory, the archives that hang or flood ``tarfile`` (a negative size after the
first member, CVE-2025-8194; a pax header of digits, CVE-2024-6232) or that claim a sparse or
gigabyte member; `extract plan` refuses such an archive before any worker reads it."""
from __future__ import annotations

import io
import os
import resource
import tarfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmic.extract import frame_archive
from xmic.extract.frame_archive import ArchiveError, archive_index
from xmic.extract.tar_headers import TarHeaderError, members

NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=160).filter(
    lambda n: n not in (".", "..") and not n.startswith("/"))


def listing(path):
    with open(path, "rb") as f:
        return [(m.name, m.offset, m.size) for m in members(f.fileno(), path,
                                                                os.path.getsize(path)) if m.regular]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(NAMES, st.integers(0, 3000)), min_size=1, max_size=6, unique_by=lambda x: x[0]),
       st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def test_every_archive_tarfile_writes_is_listed_as_tarfile_lists_it(tmp_path, items, fmt):
    path = tmp_path / "a.tar"
    try:
        with tarfile.open(path, "w", format=fmt) as t:
            for name, size in items:
                info = tarfile.TarInfo(name)
                info.size = size
                t.addfile(info, io.BytesIO(bytes([size % 251]) * size))
    except ValueError:  # a name ustar cannot hold
        return
    with tarfile.open(path) as t:
        want = [(m.name, m.offset_data, m.size) for m in t if m.isreg()]
    assert listing(path) == want


def header(name: bytes, size_field: bytes, kind: bytes = b"0") -> bytes:
    """One ustar header block with its checksum, the size field given as is."""
    h = bytearray(512)
    h[:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136] = size_field
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[257:263], h[263:265] = b"ustar\0", b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def jpeg_member(name=b"./frame_0000000001.jpg") -> bytes:
    data = b"\xff\xd8" + bytes(100)
    return header(name, b"%011o\0" % len(data)) + data + bytes(512 - len(data))


def cost(fn):
    """(CPU seconds, peak-RSS growth in MB) of ``fn()`` in this process, and what it raised."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.process_time()
    try:
        fn()
        err = None
    except Exception as e:  # noqa: BLE001 - the error is what is checked
        err = e
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time() - t0, (r1.ru_maxrss - r0.ru_maxrss) / 1024, err


def hostile(tmp_path, name: str, body: bytes):
    path = tmp_path / name
    path.write_bytes(body)
    frame_archive.clear_indexes()
    return path


def test_hostile_headers_are_refused_in_bounded_time_and_memory(tmp_path):
    negative = b"\xff" * 12  # base-256 -1: tarfile loops forever after the first member
    cases = {
        "negative.tar": (jpeg_member() + header(b"./frame_0000000002.jpg", negative)
                         + bytes(1024), "gives a negative size"),
        "pax-digits.tar": (jpeg_member() + header(b"pax", b"%011o\0" % (1 << 20), b"x")
                           + b"1" * (1 << 20) + jpeg_member(b"./frame_0000000002.jpg"),
                           "malformed record"),
        "pax-huge.tar": (header(b"pax", b"%011o\0" % (1 << 30), b"x") + bytes(1024),
                         "claims 1073741824 bytes"),
        "sparse.tar": (header(b"./frame_0000000001.jpg",  # base-256: 1.5 GB, as GNU writes it
                              bytes([0x80]) + (1536 << 20).to_bytes(11, "big"), b"S")
                       + bytes(4096), "is a sparse file, not a regular file"),
        "giant.tar": (header(b"./frame_0000000001.jpg", b"%011o\0" % (1536 << 20))
                      + bytes(4096), "claims 1610612736 bytes, more than a frame"),
    }
    for name, (body, words) in cases.items():
        path = hostile(tmp_path, name, body)
        seconds, grown, err = cost(lambda: archive_index(path))
        assert isinstance(err, ArchiveError) and words in str(err), (name, err)
        assert len(str(err).splitlines()) == 1 and name in str(err)
        assert seconds < 5 and grown < 64, (name, seconds, grown)  # tarfile: forever / 122 s / GBs


def test_every_header_moves_forward():
    """Whatever a header states, the next one is read further on: sizes of 0 included."""
    import tempfile
    body = b"".join(header(b"m%d" % i, b"00000000000\0") for i in range(50)) + bytes(1024)
    path = "t.tar"  # named in messages only
    with tempfile.TemporaryFile() as f:
        f.write(body)
        f.flush()
        got = list(members(f.fileno(), path, len(body)))
    assert [m.name for m in got] == [f"m{i}" for i in range(50)]
    assert [m.offset for m in got] == [512 * (i + 1) for i in range(50)]
    with pytest.raises(TarHeaderError, match="checksum"):
        with tempfile.TemporaryFile() as f:
            bad = bytearray(header(b"x", b"00000000000\0"))
            bad[0] ^= 1
            f.write(bytes(bad) + bytes(1024))
            f.flush()
            list(members(f.fileno(), path, 1536))


def test_plan_refuses_a_hostile_archive_naming_it(tmp_path):
    from extract_data import make_epic
    from helpers import run_xmic
    from xmic.demo.epic_layout import pack_frames
    e = make_epic(tmp_path / "e", videos=("P01_01",), frames=60, segs_per_video=1)
    tar = pack_frames(e["root"] / "P01" / "rgb_frames" / "P01_01")
    data = bytearray(tar.read_bytes())
    with tarfile.open(tar) as t:  # the archive as written, read before it is made hostile
        second = t.getmembers()[1].offset
    data[second:second + 512] = header(b"./frame_0000000002.jpg", b"\xff" * 12)
    tar.write_bytes(bytes(data))
    frame_archive.clear_indexes()
    cp = run_xmic("extract", "plan", tmp_path / "c", "--dataset", "epic", "--annotations",
                  e["annotations"], "--root", e["root"], "--views", "full_frame", check=False)
    assert cp.returncode == 2 and "P01_01.tar: the header at byte" in cp.stderr, cp.stderr
    assert "gives a negative size" in cp.stderr and not (tmp_path / "c").exists()

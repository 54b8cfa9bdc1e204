"""EPIC frame tars read in place: the same embeddings as the unpacked folder, byte for byte;
one index per archive; bad archives and members are failed segments naming archive and member."""
from __future__ import annotations

import io
import shutil
import tarfile

import pytest

from helpers import assert_same_features
from xmic.cache import CacheConfig
from xmic.demo.epic_layout import pack_frames
from xmic.extract import frame_archive
from xmic.extract.frame_archive import ArchiveError, archive_index, read_member
from xmic.extract.media import frame_source
from xmic.extract.pipeline import run_shards
from xmic.extract.planning import SplitSource, plan
from test_extract import CFG, encoder, epic  # noqa: F401  (the tiny encoder and EPIC world)


def _extract(cache, epic, root, encoder):
    plan(cache, SplitSource("epic", epic["annotations"], root, "train", boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=4))
    return run_shards(cache, CFG, encoder=encoder, echo=lambda *a: None)


def test_tar_extraction_equals_the_folder_byte_for_byte(tmp_path, epic, encoder):
    tars = tmp_path / "tars"
    shutil.copytree(epic["root"], tars)
    # one video as EPIC ships it (./frame_...), the other without the ./ prefix
    pack_frames(tars / "P01" / "rgb_frames" / "P01_01", dot_prefix=True)
    pack_frames(tars / "P01" / "rgb_frames" / "P01_02", dot_prefix=False)
    src = frame_source("epic", tars, "P01_01")
    assert src.kind == "tar" and src.path.name == "P01_01.tar"
    a = _extract(tmp_path / "folder", epic, epic["root"], encoder)
    b = _extract(tmp_path / "tar", epic, tars, encoder)
    assert a["segments_failed"] == b["segments_failed"] == 0 and b["frames"] == a["frames"] > 0
    assert_same_features(tmp_path / "folder", tmp_path / "tar")


def test_the_member_index_is_built_once_per_archive(tmp_path, epic, monkeypatch):
    folder = tmp_path / "P01_01"
    shutil.copytree(epic["root"] / "P01" / "rgb_frames" / "P01_01", folder)
    tar = pack_frames(folder)
    opened = []
    real = frame_archive.members
    monkeypatch.setattr(frame_archive, "members", lambda *a, **k: opened.append(a) or real(*a, **k))
    frame_archive.clear_indexes()
    for f in (1, 5, 60, 120, 7):
        assert read_member(tar, f)[:2] == b"\xff\xd8"  # a JPEG's start
    assert len(opened) == 1 and len(archive_index(tar)) == 120
    tar.write_bytes(tar.read_bytes())  # a replaced archive (new mtime) is indexed again
    import os
    os.utime(tar, ns=(1, 1))
    read_member(tar, 1)
    assert len(opened) == 2


def _tar(path, members):
    with tarfile.open(path, "w") as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


def test_bad_archives_and_members_name_archive_and_member(tmp_path, epic):
    jpeg = (epic["root"] / "P01" / "rgb_frames" / "P01_01" / "frame_0000000001.jpg").read_bytes()
    not_tar = tmp_path / "a.tar"
    not_tar.write_bytes(b"this is not a tar" * 100)
    with pytest.raises(ArchiveError, match=r"a.tar: .*not a readable uncompressed tar"):
        read_member(not_tar, 1)
    for bad in ("../frame_0000000001.jpg", "/abs/frame_0000000001.jpg"):
        t = _tar(tmp_path / "evil.tar", [("./frame_0000000001.jpg", jpeg, "file"), (bad, jpeg, "file")])
        frame_archive.clear_indexes()
        with pytest.raises(ArchiveError, match=r"evil.tar: member .* absolute path or holds '\.\.'.*"
                                               "nothing is extracted"):
            read_member(t, 1)
        assert not (tmp_path.parent / "frame_0000000001.jpg").exists()
    t = _tar(tmp_path / "link.tar", [("./frame_0000000001.jpg", b"", "link")])
    with pytest.raises(ArchiveError, match=r"link.tar: member ./frame_0000000001.jpg is a symbolic "
                                           "link, not a regular file"):
        read_member(t, 1)
    t = _tar(tmp_path / "miss.tar", [("./frame_0000000001.jpg", jpeg, "file")])
    with pytest.raises(ArchiveError, match=r"miss.tar: member ./frame_0000000009.jpg \(frame 9\) "
                                           "is missing"):
        read_member(t, 9)
    cut = tmp_path / "cut.tar"  # the archive cut inside the last member's data
    full = _tar(tmp_path / "full.tar", [("./frame_0000000001.jpg", jpeg, "file"),
                                        ("./frame_0000000002.jpg", jpeg * 4, "file")])
    cut.write_bytes(full.read_bytes()[:512 * 3 + len(jpeg) + 100])
    with pytest.raises(ArchiveError, match=r"cut.tar: (member ./frame_0000000002.jpg .*truncated|"
                                           "damaged tar|not a readable)"):
        read_member(cut, 2)


def test_a_member_that_is_not_a_jpeg_fails_its_segment_only(tmp_path, epic, encoder):
    tars = tmp_path / "media"
    shutil.copytree(epic["root"], tars)
    frames = tars / "P01" / "rgb_frames" / "P01_02"
    (frames / "frame_0000000040.jpg").write_bytes(b"not a jpeg at all")
    pack_frames(frames)
    s = _extract(tmp_path / "c", epic, tars, encoder)
    assert s["segments_failed"] == 1, s["failures"]
    (msg,) = [f for f in s["failures"] if "P01_02" in f]
    assert "P01_02.tar: member ./frame_0000000040.jpg" in msg and "not a readable image" in msg
    assert (tars / "P01" / "rgb_frames" / "P01_02.tar").is_file()  # the archive is untouched
    assert not (tars / "P01" / "rgb_frames" / "P01_02").exists()


def test_a_process_keeps_few_archives_open(tmp_path, epic):
    """Reading more archives than OPEN_ARCHIVES closes the least recently used descriptors."""
    import os
    src = epic["root"] / "P01" / "rgb_frames" / "P01_01"
    tars = []
    for i in range(frame_archive.OPEN_ARCHIVES + 5):
        shutil.copytree(src, tmp_path / f"v{i}")
        tars.append(pack_frames(tmp_path / f"v{i}"))
    before = len(os.listdir("/proc/self/fd"))
    for t in tars:
        assert read_member(t, 1)[:2] == b"\xff\xd8"
    assert len(frame_archive._descriptors) <= frame_archive.OPEN_ARCHIVES
    assert len(os.listdir("/proc/self/fd")) - before <= frame_archive.OPEN_ARCHIVES
    assert read_member(tars[0], 2)[:2] == b"\xff\xd8"  # a closed one opens again


def test_only_regular_files_are_frames(tmp_path, epic, encoder):
    """A FIFO named like a frame would block a worker forever (on Slurm: timeout, requeue, hang
    again): plan refuses it naming it; one made after plan fails its segment only."""
    import os
    from xmic.extract.planning import PlanError
    media = tmp_path / "media"
    shutil.copytree(epic["root"], media)
    frame = media / "P01" / "rgb_frames" / "P01_01" / "frame_0000000003.jpg"
    frame.unlink()
    os.mkfifo(frame)
    with pytest.raises(PlanError, match=r"frame_0000000003.jpg: not a regular file \(a FIFO"):
        plan(tmp_path / "c", SplitSource("epic", epic["annotations"], media, "train",
                                         boxes=epic["boxes"]))
    frame.unlink()
    shutil.copy(epic["root"] / "P01" / "rgb_frames" / "P01_01" / "frame_0000000003.jpg", frame)
    plan(tmp_path / "c", SplitSource("epic", epic["annotations"], media, "train",
                                     boxes=epic["boxes"]))
    frame.unlink()
    os.mkfifo(frame)  # after plan: the reader refuses it instead of blocking on it
    s = run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)
    assert s["segments_failed"] == 1, s["failures"]
    assert "frame_0000000003.jpg: frame 3 is not a regular file (a FIFO" in s["failures"][0]


def test_an_archive_renamed_over_is_read_anew(tmp_path, epic):
    """A copy renamed over an archive between two reads: its own bytes are read (the member
    index and the descriptor both follow the new file), not the old file's."""
    import os
    folder = tmp_path / "P01_01"
    shutil.copytree(epic["root"] / "P01" / "rgb_frames" / "P01_01", folder)
    tar = pack_frames(folder)
    first = read_member(tar, 1)
    other = tmp_path / "other"
    shutil.copytree(epic["root"] / "P01" / "rgb_frames" / "P01_02", other)  # another video
    replacement = pack_frames(other)
    os.rename(replacement, tar)
    os.utime(tar, ns=(5, 5))
    again = read_member(tar, 1)
    assert again == (epic["root"] / "P01" / "rgb_frames" / "P01_02" / "frame_0000000001.jpg").read_bytes()
    assert again != first


def test_indexes_are_built_at_plan_stored_and_reused_never_trusted_past_their_checks(
        tmp_path, epic, monkeypatch):
    """Plan indexes every tar into CACHE/archive_index; extraction reads the stored indexes
    without parsing a header; a stored index of another archive version, or one whose entries
    point outside the archive, is built again; a process holds at most INDEXES_KEPT."""
    import numpy as np
    from xmic.extract.planning import SplitSource, plan
    tars = tmp_path / "tars"
    shutil.copytree(epic["root"], tars)
    for v in ("P01_01", "P01_02"):
        pack_frames(tars / "P01" / "rgb_frames" / v)
    plan(tmp_path / "c", SplitSource("epic", epic["annotations"], tars, "train",
                                     boxes=epic["boxes"]))
    store = tmp_path / "c" / "archive_index"
    assert len(list(store.glob("*.npz"))) == 2
    parsed = []
    real = frame_archive.members
    monkeypatch.setattr(frame_archive, "members", lambda *a, **k: parsed.append(a) or real(*a, **k))
    frame_archive.clear_indexes()
    frame_archive.use_index_store(store)
    try:
        tar = tars / "P01" / "rgb_frames" / "P01_01.tar"
        assert read_member(tar, 3)[:2] == b"\xff\xd8" and parsed == []  # from the store
        st = tar.stat()
        stored = frame_archive.load_stored(store, str(tar), st.st_size, st.st_mtime_ns)
        assert stored is not None and len(stored) == 120
        assert frame_archive.load_stored(store, str(tar), st.st_size + 512, st.st_mtime_ns) is None
        bad = frame_archive.ArchiveIndex(stored.frames, stored.offsets + st.st_size,
                                         stored.sizes)  # entries pointing past the file
        frame_archive.store_index(store, str(tar), st.st_size, st.st_mtime_ns, bad)
        assert frame_archive.load_stored(store, str(tar), st.st_size, st.st_mtime_ns) is None
        frame_archive.clear_indexes()
        assert read_member(tar, 3)[:2] == b"\xff\xd8" and len(parsed) == 1  # built again
        # a process holds a bounded number of indexes, whatever the number of archives
        for i in range(frame_archive.INDEXES_KEPT + 5):
            copy = tmp_path / "many" / f"v{i}.tar"
            copy.parent.mkdir(exist_ok=True)
            shutil.copy(tar, copy)
            read_member(copy, 1)
        assert frame_archive.held_indexes() == frame_archive.INDEXES_KEPT
        assert np.array_equal(frame_archive.archive_index(tar).frames, np.arange(1, 121))
    finally:
        frame_archive.use_index_store(None)

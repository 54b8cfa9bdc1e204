"""Disk full: extraction into a small tmpfs (mounted by the test, as root) that fills mid-run.
The error says the disk is full, committed shards stay valid, and once space is freed (the
tmpfs is grown) the same command completes with the bytes of a clean run. Marked `faults`;
skipped with the reason where tmpfs cannot be mounted (not root, no CAP_SYS_ADMIN)."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import assert_same_features, run_xmic
from extract_data import TINY, make_epic
from xmic.cache import Cache
from xmic.cache.verify import verify

pytestmark = pytest.mark.faults


def mount_tmpfs(path: Path, size_kb: int, remount: bool = False) -> str | None:
    opts = f"{'remount,' if remount else ''}size={size_kb}k"
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                        capture_output=True, text=True)
    return None if cp.returncode == 0 else (cp.stderr.strip() or f"mount exited {cp.returncode}")


def used_kb(mount: Path) -> int:
    st = os.statvfs(mount)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


xmic = functools.partial(run_xmic, check=False, subprocess_=True)  # HDF5 must not crash us
in_process = functools.partial(run_xmic, check=False)  # what never meets the full disk


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_extraction_into_a_full_disk(tmp_path, backend):
    """The disk fills in the middle of the run on either backend. HDF5 shards are built in memory
    and written with plain I/O, so the HDF5 library itself never meets the full disk."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a tmpfs")
    epic = make_epic(tmp_path / "epic", videos=("P01_01", "P01_02", "P01_03", "P01_04"))
    run = ["--model", TINY, "--weights", "random", "--workers", "0", "--device", "cpu",
           "--batch-size", "8", "--set", "sampling=all"]
    plan = ["--dataset", "epic", "--annotations", epic["annotations"], "--root", epic["root"],
            "--boxes", epic["boxes"], "--shard-size", "1", "--backend", backend]
    disk = tmp_path / "disk"
    disk.mkdir()
    why = mount_tmpfs(disk, 64 << 10)
    if why:
        pytest.skip(f"cannot mount a tmpfs here: {why}")
    clean = tmp_path / "clean"
    assert in_process("extract", "plan", clean, *plan).returncode == 0
    assert in_process("extract", "run", clean, *run).returncode == 0
    try:  # measure on the tmpfs itself what a planned and a finished cache take
        shutil.copytree(clean, disk / "full")
        full_kb = used_kb(disk)
        shutil.rmtree(disk / "full")
        assert in_process("extract", "plan", disk / "c", *plan).returncode == 0
        plan_kb = used_kb(disk)
        # room for about half the shards: the disk fills in the middle of the run
        assert mount_tmpfs(disk, plan_kb + (full_kb - plan_kb) // 2, remount=True) is None
    except BaseException:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        raise
    try:
        cache = disk / "c"
        cp = xmic("extract", "run", cache, *run)
        assert cp.returncode != 0
        out = cp.stdout + cp.stderr
        tail = "\n".join(x for x in out.splitlines() if not x.startswith((" ", "Traceback", "RuntimeError", ", filename", "Exception ignored")))
        assert "the disk is full (no space left on device)" in out, f"exit {cp.returncode}: {tail[-3000:]}"
        assert "Traceback" not in out, out[-2000:]
        c = Cache.open(cache)
        done = len(c.committed("hand_crop"))
        assert 1 <= done < len(c.shards()), done
        assert verify(c, deep=True, partial=True) == []  # what committed is whole
        assert not list((cache / "views" / "hand_crop" / ".tmp").iterdir())  # no half shard left
        assert mount_tmpfs(disk, full_kb * 4, remount=True) is None  # space is freed
        cp = in_process("extract", "run", cache, *run)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        c = Cache.open(cache)
        assert verify(c, deep=True) == []
        assert_same_features(cache, clean)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
@pytest.mark.parametrize("stage", ["data", "rows.parquet", "marker.json", "failure"])
def test_disk_fills_at_each_write_of_a_commit(tmp_path, monkeypatch, backend, stage):
    """ENOSPC injected into one write of a shard's commit (its data, rows, marker) or into every
    write (so the failure record cannot be written either): a one-line "disk is full" error, no
    half shard, the other shards intact, and the shard commits once space is back."""
    import errno

    from helpers import fill_cache, fingerprint, segment_frames
    from xmic.cache import ShardWriter
    from xmic.files import atomic as atomic_files
    from xmic.cache.paths import CacheError

    if stage == "data":  # HDF5: its file image; zarr: its own file writes
        stage = "data.h5" if backend == "hdf5" else "zarr"
    cache = fill_cache(tmp_path / "c", backend=backend, n=8, views=("full_frame",), splits=("train",))
    shard = cache.shards()[0]
    (cache.root / "views" / "full_frame" / shard).rename(tmp_path / "moved")  # to be rewritten
    real_write, real_open = atomic_files._write_fd, atomic_files.os.open
    names: dict[int, str] = {}

    def tracking_open(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        names[fd] = os.path.basename(path)
        return fd

    def full_write(fd, data):
        if stage == "failure" or stage in names.get(fd, ""):  # "failure": every write
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    w = ShardWriter(cache, "full_frame", shard, 16, fingerprint()).start()
    monkeypatch.setattr(atomic_files.os, "open", tracking_open)
    monkeypatch.setattr(atomic_files, "_write_fd", full_write)
    if stage == "zarr":
        import zarr.storage._local as zlocal

        def no_space(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(zlocal, "_put", no_space)
    for sid in w.segment_ids:
        a = segment_frames(sid, 16, "full_frame")
        w.add(sid, a, range(len(a)))
    with pytest.raises(CacheError, match="the disk is full"):
        try:
            w.commit()
        except CacheError as e:
            w.record_failure(e)  # as extraction does; best effort on a full disk
            raise
    monkeypatch.undo()
    assert cache.shard_state("full_frame", shard) != "done"
    assert not list((cache.root / "views" / "full_frame" / ".tmp").iterdir())
    assert all(cache.shard_state("full_frame", s) == "done" for s in cache.shards()[1:])
    fill_cache(tmp_path / "c", backend=backend, n=8, views=("full_frame",), splits=("train",),
               resume=True)
    assert verify(Cache.open(tmp_path / "c"), deep=True) == []

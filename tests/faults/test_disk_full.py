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

from conftest import assert_same_features, run_xmic
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


xmic = functools.partial(run_xmic, check=False)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_extraction_into_a_full_disk(tmp_path, backend):
    """zarr meets ENOSPC in the middle of a shard's write; for HDF5, whose library can crash the
    process on a failed write, the writer checks free space before each shard."""
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
    assert xmic("extract", "plan", clean, *plan).returncode == 0
    assert xmic("extract", "run", clean, *run).returncode == 0
    try:  # measure on the tmpfs itself what a planned and a finished cache take
        shutil.copytree(clean, disk / "full")
        full_kb = used_kb(disk)
        shutil.rmtree(disk / "full")
        assert xmic("extract", "plan", disk / "c", *plan).returncode == 0
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
        cp = xmic("extract", "run", cache, *run)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        c = Cache.open(cache)
        assert verify(c, deep=True) == []
        assert_same_features(cache, clean)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)

"""A writer killed with SIGKILL mid-shard leaves no shard counted as done, and a re-run completes
with the same bytes as a clean run; two writers racing on one shard give exactly one commit."""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import fill_cache, fingerprint, segment_frames
from xmic.cache import Cache, ShardWriter, load_split
from xmic.cache.paths import count_attempts
from xmic.cache.verify import verify

WORKER = Path(__file__).with_name("shard_worker.py")


def start(root, backend, hang_at, ready):
    return subprocess.Popen([sys.executable, str(WORKER), str(root), backend, hang_at, str(ready)])


def wait_for(path: Path, proc, timeout=60):
    t = time.time()
    while not path.exists():
        assert proc.poll() is None, "worker exited early"
        assert time.time() - t < timeout, "worker never got ready"
        time.sleep(0.01)


def same_content(a: Cache, b: Cache):
    for view in b.views():
        assert sorted(a.committed(view)) == sorted(b.committed(view))
        for shard in b.committed(view):
            ma, mb = a.marker(view, shard), b.marker(view, shard)
            assert (ma["checksum"], ma["rows_sha256"], ma["files"]) == \
                (mb["checksum"], mb["rows_sha256"], mb["files"])
    for split in b.splits():
        la, lb = load_split(a, ["full_frame", "hand_crop"], split), load_split(b, ["full_frame", "hand_crop"], split)
        for v in la.views:
            assert la.views[v].features.tobytes() == lb.views[v].features.tobytes()


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    return {b: fill_cache(base / b, backend=b, n=24, dim=32, shard_segments=3) for b in ("zarr", "hdf5")}


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
@pytest.mark.parametrize("hang_at", ["data", "marker"])
def test_sigkill_mid_shard_then_rerun(tmp_path, clean_runs, backend, hang_at):
    root, ready = tmp_path / "c", tmp_path / "ready"
    proc = start(root, backend, hang_at, ready)
    wait_for(ready, proc)
    live = Cache.open(root)
    assert live.shard_state("full_frame", live.shards()[2]) == "running"  # writer alive, mid-shard
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache = Cache.open(root)
    view = "full_frame"
    done = cache.committed(view)
    assert len(done) == 2, "the third shard was in progress and must not count as done"
    third = cache.shards()[2]
    # its temporary folder is left behind, but its writer is dead: pending, not running
    assert any((cache.root / "views" / view / ".tmp").iterdir())
    assert cache.shard_state(view, third) == "pending"
    assert verify(cache, deep=True, partial=True) == []
    # the re-run removes the dead writer's temporary folder and completes everything
    proc = start(root, backend, "none", tmp_path / "ready2")
    assert proc.wait(timeout=120) == 0
    cache = Cache.open(root)
    assert verify(cache, deep=True) == []
    assert not any((cache.root / "views" / view / ".tmp").iterdir())
    assert count_attempts(cache.root, view, third) == 2
    assert count_attempts(cache.root, view, cache.shards()[0]) == 1
    same_content(cache, clean_runs[backend])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_moment(tmp_path, clean_runs, seed):
    backend = ("zarr", "hdf5")[seed % 2]
    root = tmp_path / "c"
    rng = random.Random(seed)
    for attempt in range(3):
        ready = tmp_path / f"ready{attempt}"
        proc = start(root, backend, "slow", ready)
        wait_for(ready, proc)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (root / "cache.json").exists():
            assert verify(Cache.open(root), deep=True, partial=True) == []
    proc = start(root, backend, "none", tmp_path / "final")
    assert proc.wait(timeout=120) == 0
    cache = Cache.open(root)
    assert verify(cache, deep=True) == []
    same_content(cache, clean_runs[backend])


def _race(root, barrier, results, i):
    cache = Cache.open(root)
    shard = cache.shards()[0]
    w = ShardWriter(cache, "extra", shard, 16, fingerprint())
    for sid in w.segment_ids:
        a = segment_frames(sid, 16, "extra")
        w.add(sid, a, range(len(a)))
    barrier.wait()
    results[i] = w.commit()


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_duplicate_writers_one_commit(tmp_path, backend):
    ctx = mp.get_context("fork")
    for trial in range(5):
        cache = fill_cache(tmp_path / f"c{trial}", backend=backend, views=("full_frame",))
        barrier, results = ctx.Barrier(2), ctx.Array("i", [-1, -1])
        procs = [ctx.Process(target=_race, args=(cache.root, barrier, results, i)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert sorted(results[:]) == [0, 1], f"trial {trial}: exactly one commit must win"
        assert verify(cache, deep=True, partial=True) == []
        assert not [p for p in (cache.root / "views" / "extra" / ".tmp").iterdir()]
        assert os.path.exists(cache.root / "views" / "extra" / cache.shards()[0] / "marker.json")


def test_create_killed_before_its_manifest_is_finished_not_refused(tmp_path):
    """A create killed after the config file (or mid-write of either file) leaves a folder that
    the same command finishes; a folder with anything else in it is still refused."""
    from xmic.cache import CacheConfig
    from xmic.cache.paths import CacheError
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.yaml").write_text("backend: zarr\n")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    from xmic.files.atomic import host_tag
    (half / f".cache.json.{host_tag()}.{dead}.0123abcd").write_text("{")
    from xmic.cache.cache_folder import discard_if_new
    with pytest.raises(RuntimeError), discard_if_new(half):  # a refused command, same rule
        (half / "config.yaml").write_text("backend: zarr\n")
        raise RuntimeError("refused")
    assert list(half.iterdir()) == []
    (half / "config.yaml").write_text("backend: zarr\n")
    (half / f".cache.json.{host_tag()}.{dead}.0123abcd").write_text("{")
    cache = Cache.create(half, "epic", CacheConfig())
    assert cache.dataset == "epic" and Cache.open(half).config == CacheConfig()
    assert sorted(p.name for p in half.iterdir()) == ["cache.json", "config.yaml"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("x")
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not empty and is not a cache"):
        Cache.create(other, "epic", CacheConfig())
    assert (other / "notes.txt").read_text() == "mine"

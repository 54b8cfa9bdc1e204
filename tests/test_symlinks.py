"""Links planted in our folders: every file and folder that a cache or a run writes, appends to,
renames or deletes is refused when it is (or lies below) a symbolic link, the link named, and the
link's target outside is left untouched."""
from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import fill_cache, fingerprint, segment_frames
from train_data import make_train_cache
from xmic.cache import ShardWriter
from xmic.files.atomic import UnsafePathError, guard, write_bytes_atomic
from xmic.cache.vocab import add_vocab
from xmic.config import load_config
from xmic.train.config import TrainConfig
from xmic.train.loop import train


@pytest.fixture
def outside(tmp_path):
    """A file and a folder outside every cache, whose contents must never change."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text("untouched")
    return d


def snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def write_shard(cache, shard):
    with ShardWriter(cache, "full_frame", shard, 16, fingerprint()) as w:
        for sid in w.segment_ids:
            a = segment_frames(sid, 16, "full_frame")
            w.add(sid, a, range(len(a)))
        w.commit()


@pytest.mark.parametrize("planted", [".tmp", ".running", ".attempts", ".attempts/SHARD.log",
                                     "SHARD.failed.json", "SHARD"])
def test_links_in_a_view_folder_are_refused(tmp_path, outside, planted):
    cache = fill_cache(tmp_path / "c", n=8, views=(), splits=("train",))  # planned, not written
    shard = cache.shards()[0]
    link = cache.root / "views" / "full_frame" / planted.replace("SHARD", shard)
    link.parent.mkdir(parents=True, exist_ok=True)
    points_to_file = planted.endswith((".log", ".json"))
    os.symlink(outside / "secret.txt" if points_to_file else outside, link)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="symbolic link") as e:
        if planted == "SHARD.failed.json":
            w = ShardWriter(cache, "full_frame", shard, 16, fingerprint())
            w._write_failure(RuntimeError("boom"))
        else:
            write_shard(cache, shard)
    assert str(link) in str(e.value)
    assert snapshot(outside) == before and sorted(os.listdir(outside)) == ["secret.txt"]


def test_links_at_the_cache_level_are_refused(tmp_path, outside):
    cache = make_train_cache(tmp_path / "c", n=8)
    before = snapshot(outside)
    (cache.root / "index.parquet").unlink(missing_ok=True)
    os.symlink(outside / "secret.txt", cache.root / "index.parquet")
    with pytest.raises(UnsafePathError, match="index.parquet"):
        cache.index(refresh=True)
    (cache.root / "vocab").rename(tmp_path / "vocab-moved")
    os.symlink(outside, cache.root / "vocab")
    with pytest.raises(UnsafePathError, match="vocab"):
        add_vocab(cache, "noun2", ["a", "b"], np.ones((2, 32), np.float32), "{}", {})
    assert snapshot(outside) == before and sorted(os.listdir(outside)) == ["secret.txt"]


@pytest.mark.parametrize("planted", ["checkpoint.pt", "metrics.jsonl", "config.yaml",
                                     "train_curve.png"])
def test_links_in_a_run_folder_are_refused(tmp_path, outside, planted):
    cache = make_train_cache(tmp_path / "c", n=12)
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside / "secret.txt", run / planted)
    cfg = load_config(TrainConfig, None, ["epochs=1", "device=cpu"])
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match=planted):
        train(cache.root, cfg, run, echo=lambda *a, **k: None)
    assert snapshot(outside) == before


def test_guard_checks_every_component(tmp_path, outside):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    os.symlink(outside, root / "a" / "b")
    with pytest.raises(UnsafePathError, match="a/b"):
        guard(root / "a" / "b" / "c" / "file", root)
    with pytest.raises(UnsafePathError, match="outside"):
        guard(tmp_path / "elsewhere", root)
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        guard(root / "a" / ".." / ".." / "x", root)
    with pytest.raises(UnsafePathError):
        write_bytes_atomic(root / "a" / "b" / "new.txt", b"x", root)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    root_link = tmp_path / "root-link"  # the folder the user names may itself be a link
    os.symlink(root, root_link)
    write_bytes_atomic(root_link / "ok.txt", b"fine", root_link)
    assert (root / "ok.txt").read_bytes() == b"fine"


def test_a_cache_or_run_folder_that_is_itself_a_link_is_the_users_choice(tmp_path):
    real = tmp_path / "scratch"
    real.mkdir()
    (tmp_path / "caches").mkdir()
    os.symlink(real, tmp_path / "caches" / "epic")
    cache = fill_cache(tmp_path / "caches" / "epic", n=6, views=("full_frame",), splits=("train",))
    assert (real / "cache.json").exists() and cache.committed("full_frame")
    os.symlink(tmp_path / "scratch-run", tmp_path / "run-link")
    (tmp_path / "scratch-run").mkdir()
    tc = make_train_cache(tmp_path / "tc", n=12)
    train(tc.root, load_config(TrainConfig, None, ["epochs=1", "device=cpu"]), tmp_path / "run-link",
          echo=lambda *a, **k: None)
    assert (tmp_path / "scratch-run" / "checkpoint.pt").exists()


def test_the_demo_refuses_a_link_planted_in_its_folder(tmp_path, outside):
    from click.testing import CliRunner

    from xmic.cli import main
    out = tmp_path / "demo"
    (out / "world").mkdir(parents=True)
    (out / ".xmic-demo").write_text("a previous demo")
    os.symlink(outside, out / "world" / "epic")
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and "is a symbolic link inside" in r.output, r.output
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_the_demo_never_deletes_what_it_did_not_make(tmp_path):
    from click.testing import CliRunner

    from xmic.cli import main
    out = tmp_path / "mine"
    (out / "runs" / "thesis-run").mkdir(parents=True)
    (out / "runs" / "thesis-run" / "checkpoint.pt").write_bytes(b"months of work")
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and "which the demo did not make" in r.output, r.output
    assert (out / "runs" / "thesis-run" / "checkpoint.pt").read_bytes() == b"months of work"
    (out / ".xmic-demo").write_text("")  # beside a previous demo's files, a file of the user's
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and "notes.txt" in r.output and (out / "runs" / "thesis-run").exists()
    (out / "notes.txt").unlink()  # a demo folder whose runs/ holds a run of the user's
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 2 and "runs/ holds thesis-run, which the demo did not make" in r.output
    assert (out / "runs" / "thesis-run" / "checkpoint.pt").read_bytes() == b"months of work"


@pytest.mark.parametrize("planted", ["slurm", "slurm/logs", "slurm/logs/123_submitted.pkl"])
def test_a_link_on_the_way_to_the_slurm_logs_is_refused(tmp_path, outside, planted):
    """submitit writes pickles into the log folder that the jobs unpickle: a link planted there
    (carried by `cp -r` of a colleague's cache or grid) would run whatever its target holds."""
    from helpers import run_xmic
    from xmic.slurm.config import SlurmConfig
    from xmic.slurm.launch import log_folder
    cache = fill_cache(tmp_path / "c")
    link = cache.root / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside if not planted.endswith(".pkl") else outside / "secret.txt", link)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        log_folder(SlurmConfig(), cache.root, "slurm/logs")
    cp = run_xmic("slurm", "submit", cache.root, "--executor", "local", "--weights", "random",
                  "--dry-run", check=False)
    assert cp.returncode == 2 and "is a symbolic link inside" in cp.stderr, cp.stderr
    assert snapshot(outside) == before and sorted(os.listdir(outside)) == ["secret.txt"]
    # a log folder the user names explicitly may be a link: their choice
    assert log_folder(SlurmConfig(log_dir=str(tmp_path / "mine")), cache.root, "x") == \
        (tmp_path / "mine").resolve()
    # submitit's own links inside the folder (to the job's script there) are not refused
    link.unlink() if link.is_symlink() else None
    logs = cache.root / "slurm" / "logs"
    if logs.is_dir() and not logs.is_symlink():
        (logs / "9_submission.sh").write_text("#!/bin/sh\n")
        os.symlink(logs / "9_submission.sh", logs / ".submission_file_ab12.sh")
        assert log_folder(SlurmConfig(), cache.root, "slurm/logs") == logs.resolve()


@pytest.mark.parametrize("planted", ["folder", "file"])
def test_a_link_planted_as_the_archive_index_store_is_never_written_or_read(tmp_path, outside,
                                                                          planted):
    """CACHE/archive_index (or one index file in it) as a link: indexes are neither stored
    through it nor read from it; the archive is indexed from its own headers instead."""
    import io
    import tarfile
    from xmic.extract import frame_archive
    tar = tmp_path / "v.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("./frame_0000000001.jpg")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    store = tmp_path / "c" / "archive_index"
    store.parent.mkdir()
    if planted == "folder":
        os.symlink(outside, store)
    else:
        store.mkdir()
        st = tar.stat()
        os.symlink(outside / "secret.txt", frame_archive._stored_path(store, str(tar)))
    before = snapshot(outside)
    frame_archive.clear_indexes()
    frame_archive.use_index_store(store)
    try:
        assert frame_archive.read_member(tar, 1) == b"abc"
        st = tar.stat()
        assert frame_archive.load_stored(store, str(tar), st.st_size, st.st_mtime_ns) is None
        assert not frame_archive.is_stored(store, str(tar), st.st_size, st.st_mtime_ns)
        with pytest.raises(UnsafePathError, match="symbolic link"):
            frame_archive.index_archives([tar], store, workers=1)
    finally:
        frame_archive.use_index_store(None)
        frame_archive.clear_indexes()
    assert snapshot(outside) == before and sorted(os.listdir(outside)) == ["secret.txt"]

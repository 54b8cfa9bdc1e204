"""Share a cache: publish (card + manifest), fetch (from a folder, a file URL, an offline hub
cache) with every file checked, train and evaluate on the fetched copy (the same numbers), and
export to parquet and npy read back by plain pyarrow and numpy."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import run_xmic
from train_data import make_train_cache
from xmic.cache import Cache, load_split
from xmic.cache.card import read_card
from xmic.cache.publish import MANIFEST
from xmic.cache.verify import verify


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    cache = make_train_cache(root / "cache", n=24, classes=4, dim=16,
                             splits=("train", "validation"), mode="constant")
    out = run_xmic("cache", "publish", cache.root, root / "pub").stdout
    assert "published" in out and "huggingface-cli upload" in out
    return cache, root / "pub"


def metrics(cache_dir: Path, out: Path) -> dict:
    run_xmic("train", "--cache", cache_dir, "--method", "linear", "--epochs", "2",
             "--device", "cpu", "--out", out, "--set", "heldout_fraction=0")
    cp = run_xmic("evaluate", out, "--cache", cache_dir, "--split", "validation", "--json")
    m = json.loads(cp.stdout[cp.stdout.index("{"):])
    return {k: v for k, v in m.items() if k in ("top1", "top5", "mean_class_accuracy")}


def test_publish_fetch_train_gives_the_same_numbers(published, tmp_path):
    cache, pub = published
    files = json.loads((pub / MANIFEST).read_text())["files"]
    assert "README.md" in files and not any(".attempts" in f or ".lock" in f for f in files)
    card = read_card(pub / "README.md")
    assert card["dataset"] == "epic" and card["splits"]["train"]["segments"] == 24
    assert card["vocabularies"]["noun"]["classes"] == 4
    assert set(card["views"]) == {"hand_crop", "full_frame"}
    text = (pub / "README.md").read_text()
    assert text.startswith("---\nlicense: cc-by-nc-4.0\n") and "| train | 24 |" in text
    for source in (pub, f"file://{pub}"):
        dest = tmp_path / f"got{len(str(source))}"
        out = run_xmic("cache", "fetch", source, dest).stdout
        assert "every file matches its manifest" in out
        assert verify(Cache.open(dest), deep=True) == []
    a = load_split(cache, ["hand_crop", "full_frame"], "validation")
    b = load_split(Cache.open(dest), ["hand_crop", "full_frame"], "validation")
    for v in a.views:
        assert a.views[v].features.tobytes() == b.views[v].features.tobytes()
    assert metrics(cache.root, tmp_path / "r1") == metrics(dest, tmp_path / "r2")


def test_a_tampered_file_card_or_manifest_is_refused_naming_it(published, tmp_path):
    _, pub = published
    bad = tmp_path / "bad"
    shutil.copytree(pub, bad)
    shard = next(p for p in sorted((bad / "views" / "hand_crop").rglob("c/0/0")))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    cp = run_xmic("cache", "fetch", bad, tmp_path / "d1", check=False)
    rel = shard.relative_to(bad).as_posix()
    assert cp.returncode == 2 and f"{rel} does not match {MANIFEST}" in cp.stderr, cp.stderr
    assert not (tmp_path / "d1").exists() and not list(tmp_path.glob("d1.*"))
    # a card edited (its manifest entry made to match) that no longer describes the files
    shutil.rmtree(bad)
    shutil.copytree(pub, bad)
    card = (bad / "README.md").read_text().replace("      segments: 24", "      segments: 25", 1)
    (bad / "README.md").write_text(card)
    man = json.loads((bad / MANIFEST).read_text())
    import hashlib
    man["files"]["README.md"] = {"bytes": len(card.encode()),
                                 "sha256": hashlib.sha256(card.encode()).hexdigest()}
    (bad / MANIFEST).write_text(json.dumps(man))
    cp = run_xmic("cache", "fetch", bad, tmp_path / "d2", check=False)
    assert cp.returncode == 2 and "README.md does not describe its files" in cp.stderr, cp.stderr
    assert "splits.train.segments: card says 25, files say 24" in cp.stderr
    # a manifest naming a path outside the folder
    man["files"]["../outside"] = {"bytes": 1, "sha256": "0" * 64}
    (bad / MANIFEST).write_text(json.dumps(man))
    cp = run_xmic("cache", "fetch", bad, tmp_path / "d3", check=False)
    assert cp.returncode == 2 and "'../outside': not a plain relative path" in cp.stderr
    # a planted link in the published folder is not followed
    shutil.rmtree(bad)
    shutil.copytree(pub, bad)
    target = bad / "cache.json"
    secret = tmp_path / "secret.json"
    secret.write_text(target.read_text())
    target.unlink()
    target.symlink_to(secret)
    cp = run_xmic("cache", "fetch", bad, tmp_path / "d4", check=False)
    assert cp.returncode == 2 and "symbolic link" in cp.stderr, cp.stderr
    # and a folder on the way that is a link (its files would come from elsewhere)
    shutil.rmtree(bad)
    shutil.copytree(pub, bad)
    vocab = bad / "vocab"
    shutil.move(vocab, tmp_path / "elsewhere")
    vocab.symlink_to(tmp_path / "elsewhere")
    cp = run_xmic("cache", "fetch", bad, tmp_path / "d5", check=False)
    assert cp.returncode == 2 and "is not a plain file of the published folder" in cp.stderr, \
        cp.stderr
    assert not (tmp_path / "d5").exists()


def test_publish_refuses_an_incomplete_cache_naming_the_shards(tmp_path):
    from helpers import fill_cache
    cache = fill_cache(tmp_path / "c", n=6, fail_every=4)
    cp = run_xmic("cache", "publish", cache.root, tmp_path / "p", check=False)
    assert cp.returncode == 2 and "shard(s) are not complete" in cp.stderr, cp.stderr
    assert "(holds failed segments)" in cp.stderr and "--allow-incomplete" in cp.stderr
    assert not (tmp_path / "p").exists()
    run_xmic("cache", "publish", cache.root, tmp_path / "p", "--allow-incomplete")
    card = read_card(tmp_path / "p" / "README.md")
    assert card["splits"]["train"]["failed"] > 0
    cp = run_xmic("cache", "publish", cache.root, tmp_path / "p", check=False)
    assert cp.returncode == 2 and "not an empty folder" in cp.stderr


def test_an_export_of_a_cache_still_extracting_is_finished_by_the_next_one(tmp_path):
    """A shard one view has not committed is exported with its rows pending and not marked
    done: exporting again into the same folder once it is committed writes it whole."""
    from helpers import fill_cache
    from xmic.cache.export import export
    cache = fill_cache(tmp_path / "c", n=6, views=("full_frame",))
    import shutil as sh
    shard = sorted(cache.committed("full_frame"))[0]
    parked = tmp_path / "parked"
    sh.move(cache.committed("full_frame")[shard], parked)  # not committed yet
    first = export(Cache.open(cache.root), tmp_path / "out", "parquet")
    assert first["partial"] == 1
    t = pq.read_table(tmp_path / "out" / "train" / f"{shard}.parquet")
    assert set(t["status"].to_pylist()) == {"pending"} and t["full_frame"].null_count == t.num_rows
    sh.move(parked, tmp_path / "c" / "views" / "full_frame" / shard)
    again = export(Cache.open(cache.root), tmp_path / "out", "parquet")
    assert again["shards"] == 1 and again["partial"] == 0
    t = pq.read_table(tmp_path / "out" / "train" / f"{shard}.parquet")
    assert set(t["status"].to_pylist()) == {"ok"} and t["full_frame"].null_count == 0


def hub_snapshot(repo: Path, commit: str, pub: Path) -> None:
    """A dataset repository's snapshot as huggingface_hub lays it out (files are links into
    blobs), made the newest (refs/main)."""
    import hashlib
    snap = repo / "snapshots" / commit
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for f in sorted(p for p in pub.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / f.relative_to(pub)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))  # as the hub library links them
        assert link.read_bytes() == data


def test_a_hub_cache_is_used_by_name_offline(published, tmp_path, monkeypatch):
    """hf-hub:ORG/REPO through huggingface_hub's own cache, offline; fetched once per published
    content into XMIC_HOME, checked, then trained; a newer revision is fetched again, a pinned
    one is not."""
    from xmic.cache.sources import resolve_cache
    cache, pub = published
    hub = tmp_path / "hub"
    repo = hub / "datasets--xmic-test--epic-features"
    hub_snapshot(repo, "ab" * 20, pub)
    # set after huggingface_hub was imported: xmic reads them when it asks (files.hub_cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XMIC_HOME", str(tmp_path / "home"))
    m = metrics("hf-hub:xmic-test/epic-features", tmp_path / "r")
    fetched = list((tmp_path / "home" / "fetched").iterdir())
    assert len(fetched) == 1 and verify(Cache.open(fetched[0])) == []
    assert m == metrics(cache.root, tmp_path / "r0")
    assert resolve_cache("hf-hub:xmic-test/epic-features") == fetched[0]  # not fetched again
    newer = make_train_cache(tmp_path / "newer", n=12, classes=4, dim=16, seed=3,
                             splits=("train",))
    run_xmic("cache", "publish", newer.root, tmp_path / "pub2")
    hub_snapshot(repo, "cd" * 20, tmp_path / "pub2")
    now = resolve_cache("hf-hub:xmic-test/epic-features")  # the newest revision: fetched
    assert now != fetched[0] and Cache.open(now).index().num_rows == 12
    pinned = resolve_cache(f"hf-hub:xmic-test/epic-features@{'ab' * 20}")
    assert pinned == fetched[0] and len(list((tmp_path / "home" / "fetched").iterdir())) == 2
    cp = run_xmic("train", "--cache", "hf-hub:xmic-test/absent", "--out", tmp_path / "x",
                  check=False)
    assert cp.returncode == 2 and "not in the Hugging Face cache" in cp.stderr, cp.stderr
    cp = run_xmic("train", "--cache", "hf-hub:../etc", "--out", tmp_path / "x", check=False)
    assert cp.returncode == 2 and "expected hf-hub:ORG/REPO" in cp.stderr


def test_export_parquet_and_npy_equal_the_cache(published, tmp_path):
    cache, _ = published
    run_xmic("cache", "export", cache.root, tmp_path / "pq", "--format", "parquet")
    data = load_split(cache, ["hand_crop", "full_frame"], "train")
    t = pq.read_table(tmp_path / "pq" / "train")
    assert t["segment_id"].to_pylist() == data.segment_ids and set(t["status"].to_pylist()) == {"ok"}
    for v in ("hand_crop", "full_frame"):
        va = data.views[v]
        for i, cell in enumerate(t[v].to_pylist()):
            rows = va.features[va.offsets[i]:va.offsets[i + 1]].astype(np.float32)
            assert np.array_equal(np.asarray(cell, np.float32), rows)
    assert t["noun_id"].to_pylist() == data.segments["noun_id"].to_pylist()
    out = run_xmic("cache", "export", cache.root, tmp_path / "pq", "--format", "parquet").stdout
    assert "0 shard(s) written" in out  # finished shards are not written again
    cp = run_xmic("cache", "export", cache.root, tmp_path / "pq", "--format", "npy", check=False)
    assert cp.returncode == 2 and "holds other files than this export" in cp.stderr
    run_xmic("cache", "export", cache.root, tmp_path / "npy", "--format", "npy", "--view",
             "hand_crop", "--split", "train")
    va = data.views["hand_crop"]
    for i, sid in enumerate(data.segment_ids):
        a = np.load(tmp_path / "npy" / "hand_crop" / f"{sid}_hand_crop.npy", allow_pickle=False)
        assert np.array_equal(a, va.features[va.offsets[i]:va.offsets[i + 1]].astype(np.float32))
        fi = np.load(tmp_path / "npy" / "hand_crop" / f"{sid}_frame_indices.npy")
        assert fi.tolist() == data.segments["frame_indices"][i].as_py()
    import csv
    rows = list(csv.DictReader(open(tmp_path / "npy" / "segments.csv")))
    assert [r["segment_id"] for r in rows] == data.segment_ids
    try:
        import datasets
    except ImportError:
        return
    ds = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "pq" / "train" / "*.parquet")})
    assert ds["train"].num_rows == len(data.segment_ids)

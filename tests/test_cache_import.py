"""`xmic cache import` / `import-text` from generated X-MIC-style inputs, and every bad input
refused with a message naming the file and the row or key, with nothing half-written."""
from __future__ import annotations

import csv
import json
import os
import pickle

import numpy as np
import pytest

from helpers import run_xmic
from xmic.cache import Cache, CacheError, load_split
from xmic.cache.safe_pickle import safe_load_pickle
from xmic.cache.xmic_import import read_feature_pickle
from xmic_inputs import make_xmic_inputs
from xmic.cache.verify import verify
from xmic.cache.vocab import load_vocab


@pytest.fixture(scope="module")
def epic_inputs(tmp_path_factory):
    return make_xmic_inputs(tmp_path_factory.mktemp("epic"), "epic", ("train", "validation"),
                            segments_per_split=20, dim=64)


@pytest.fixture(scope="module")
def ego_inputs(tmp_path_factory):
    return make_xmic_inputs(tmp_path_factory.mktemp("ego"), "ego4d", ("train", "val"),
                            segments_per_split=12, dim=64, missing_per_split=2)


def epic_import(cache, inputs, split="train", backend="zarr", *extra, check=True):
    sf = inputs["splits"][split]
    return run_xmic("cache", "import", cache, "--dataset", "epic", "--split", split,
                    "--annotations", sf["annotations"], "--view", f"full_frame={sf['full_frame']}",
                    "--view", f"hand_crop={sf['hand_crop']}", "--backend", backend,
                    "--set", "shard_segments=6", *extra, check=check)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_epic_import_both_splits(tmp_path, epic_inputs, backend):
    cache = tmp_path / "epic"
    for split in ("train", "validation"):
        cp = epic_import(cache, epic_inputs, split, backend)
        assert "1 segments missing from the pickle (recorded as failed)" in cp.stdout
    c = Cache.open(cache)
    assert verify(c, deep=True) == []
    idx = c.index()
    missing = epic_inputs["splits"]["train"]["missing"][0]
    row = idx.filter(__import__("pyarrow.compute").compute.equal(idx["segment_id"], missing))
    assert row["status"][0].as_py() == "failed" and "missing from epic_train_full_frame.pkl" in row["error"][0].as_py()
    data = load_split(c, ["full_frame", "hand_crop"], "train")
    assert len(data.segment_ids) == 19 and data.skipped == {"failed": 1}
    pk = pickle.load(open(epic_inputs["splits"]["train"]["hand_crop"], "rb"))
    hc = data.views["hand_crop"]
    for i, sid in enumerate(data.segment_ids):
        assert np.array_equal(hc.features[hc.offsets[i]:hc.offsets[i + 1]], pk[sid].astype(np.float16))
    assert data.segments["frame_indices"][0].as_py() == list(range(hc.offsets[1] - hc.offsets[0]))
    seg = data.segments.slice(0, 1).to_pylist()[0]
    assert seg["dataset"] == "epic" and seg["fps"] == 10.0 and seg["noun"] in \
        [r["key"] for r in csv.DictReader(open(epic_inputs["noun_classes"]))]
    # re-running the same import is a no-op that resumes nothing and breaks nothing
    cp = epic_import(cache, epic_inputs, "train", backend)
    assert "0 shards written, 4 already done" in cp.stdout
    info = json.loads(run_xmic("cache", "info", cache, "--json").stdout)
    assert info["splits"]["validation"]["failed"] == 1 and info["views"]["hand_crop"]["dim"] == 64
    assert info["views"]["full_frame"]["fingerprint"]["model"]["name"] == "ViT-B-16-quickgelu"


def test_second_import_keeps_the_cache_config(tmp_path, epic_inputs):
    cache = tmp_path / "epic"
    epic_import(cache, epic_inputs, "train", "hdf5")
    sf = epic_inputs["splits"]["validation"]
    run_xmic("cache", "import", cache, "--dataset", "epic", "--split", "validation",
             "--annotations", sf["annotations"], "--view", f"hand_crop={sf['hand_crop']}")
    c = Cache.open(cache)
    assert c.backend == "hdf5" and c.config.shard_segments == 6 and verify(c, partial=True) == []
    cp = epic_import(cache, epic_inputs, "validation", "zarr", check=False)
    assert cp.returncode == 2 and "cannot change" in cp.stderr
    with pytest.raises(CacheError, match="is a cache of dataset 'epic', not 'ego4d'"):
        Cache.open_or_create(cache, "ego4d", None)


def test_ego4d_import_and_text(tmp_path, ego_inputs):
    cache = tmp_path / "ego"
    for split in ("train", "val"):
        sf = ego_inputs["splits"][split]
        run_xmic("cache", "import", cache, "--dataset", "ego4d", "--split", split,
                 "--annotations", sf["annotations"], "--taxonomy", ego_inputs["taxonomy"],
                 "--view", f"hand_crop={sf['hand_crop']}")
    run_xmic("cache", "import-text", cache, "--name", "noun", "--classes", ego_inputs["taxonomy"],
             "--field", "nouns", "--embeddings", ego_inputs["noun_text"])
    c = Cache.open(cache)
    assert verify(c, deep=True) == []
    ids = c.index()["segment_id"].to_pylist()
    assert ids[0].startswith("train_clip") and any(s.startswith("val_clip") for s in ids)
    v = load_vocab(c, "noun")
    assert v.classes[0] == "spoon_(spoon,_spoonful)" and v.embeddings.shape == (8, 64)
    assert np.array_equal(v.embeddings, np.load(ego_inputs["noun_text"]))
    assert load_split(c, ["hand_crop"], "val").skipped == {"failed": 2}
    out = run_xmic("cache", "info", cache).stdout
    assert "vocabulary noun: 8 classes, D=64" in out


def test_import_text_torch_file(tmp_path, small_cache):
    import torch
    names = tmp_path / "names.txt"
    names.write_text("take\nput\nwash\n")
    good = tmp_path / "emb.pt"
    torch.save({"verbs": torch.randn(3, 16)}, good)
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb", "--classes", names,
                  "--embeddings", good, check=False)
    assert cp.returncode == 2 and "choose one with --key" in cp.stderr
    run_xmic("cache", "import-text", small_cache.root, "--name", "verb", "--classes", names,
             "--embeddings", good, "--key", "verbs")

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    evil = tmp_path / "evil.pt"
    torch.save({"verbs": Evil()}, evil)
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb2", "--classes", names,
                  "--embeddings", evil, "--key", "verbs", check=False)
    assert cp.returncode == 2 and "refused or unreadable torch file" in cp.stderr
    assert not (tmp_path / "pwned").exists()
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((4, 16), np.float32))
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb3", "--classes", names,
                  "--embeddings", bad, check=False)
    assert cp.returncode == 2 and "4 embeddings for 3 class names" in cp.stderr
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb", "--classes", names,
                  "--embeddings", good, "--key", "verbs", check=False)
    assert "exists; pass --replace" in cp.stderr


def test_import_text_files_cost_what_they_hold(tmp_path, small_cache):
    """A stride-0 tensor of a few bytes claiming [3, 80,000,000], and a .npy header claiming
    (3, 10^10): refused on their shape before a value is copied, in one line each."""
    import resource
    import torch
    names = tmp_path / "names.txt"
    names.write_text("take\nput\nwash\n")
    wide = tmp_path / "wide.pt"
    torch.save(torch.zeros(1).expand(3, 80_000_000), wide)
    assert wide.stat().st_size < 10_000
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb", "--classes", names,
                  "--embeddings", wide, check=False)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024 < 64
    assert cp.returncode == 2 and "width 80000000, but the cache's views have width [16]" in cp.stderr
    liar = tmp_path / "liar.npy"  # a valid header claiming 3 x 10^10 values over 192 bytes
    with open(liar, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (3, 10**10)})
        f.write(bytes(192))
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "verb", "--classes", names,
                  "--embeddings", liar, check=False)
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert "liar.npy" in cp.stderr


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"P01_01_0": RunsCode()}))
    with pytest.raises(CacheError, match=r"refused: global '(posix|os)\.system' is not allowed"):
        safe_load_pickle(p)
    q = tmp_path / "evil2.pkl"
    q.write_bytes(pickle.dumps({"a": np.ones((2, 3))}) .replace(b"numpy", b"numpy", 1))
    assert safe_load_pickle(q)["a"].shape == (2, 3)
    for proto in (2, 4, 5):
        r = tmp_path / f"p{proto}.pkl"
        r.write_bytes(pickle.dumps({"x": np.arange(6, dtype=np.float32).reshape(2, 3),
                                    "y": [1, 2.5, "s", (3,)], "z": np.float32(2)}, protocol=proto))
        assert safe_load_pickle(r)["x"].tolist() == [[0, 1, 2], [3, 4, 5]]


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_bad_pickles_refused_nothing_written(tmp_path, epic_inputs):
    sf = epic_inputs["splits"]["train"]
    base = pickle.load(open(sf["full_frame"], "rb"))
    key = next(iter(base))
    cases = {
        "wrong width": ({**base, key: np.ones((3, 63), np.float32)}, "arrays of several widths"),
        "nan": ({**base, key: np.full((3, 64), np.nan, np.float32)}, f"key '{key}': 3 frame"),
        "not a dict": ([1, 2], "expected a dict of segment id"),
        "bad value": ({key: "text"}, f"key '{key}': expected an array"),
        "fp16 overflow": ({**base, key: np.full((2, 64), 1e6, np.float32)}, "overflow float16"),
    }
    for name, (obj, msg) in cases.items():
        cache = tmp_path / name.replace(" ", "_")
        pk = write_pickle(tmp_path / f"{name}.pkl", obj)
        cp = run_xmic("cache", "import", cache, "--dataset", "epic", "--split", "train",
                      "--annotations", sf["annotations"], "--view", f"full_frame={pk}", check=False)
        assert cp.returncode == 2, name
        assert msg in cp.stderr and str(pk) in cp.stderr, (name, cp.stderr)
        assert len(cp.stderr.strip().splitlines()) == 1
        assert not (cache / "views").exists(), f"{name}: nothing may be written"
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(open(sf["full_frame"], "rb").read()[:1000])
    with pytest.raises(CacheError, match="not a readable feature pickle"):
        read_feature_pickle(trunc)
    with pytest.raises(CacheError, match="pickle not found"):
        read_feature_pickle(tmp_path / "nope.pkl")


def test_bad_annotations(tmp_path, epic_inputs, ego_inputs):
    from xmic.cache.datasets import DatasetError, read_ego4d, read_epic
    src = epic_inputs["splits"]["train"]["annotations"]
    rows = list(csv.DictReader(open(src)))
    fields = list(rows[0])

    def write(rows, fields=fields, name="EPIC_100_train.csv"):
        p = tmp_path / name
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        return p
    kw = dict(noun_classes=epic_inputs["noun_classes"], verb_classes=epic_inputs["verb_classes"])
    with pytest.raises(DatasetError, match=r"row 4: duplicate segment id .* \(first at row 2\)"):
        read_epic(write(rows[:2] + [rows[0]]), "train", **kw)
    with pytest.raises(DatasetError, match=r"row 3: noun id 99 out of range 0..11"):
        read_epic(write([rows[0], {**rows[1], "noun_class": "99"}]), "train", **kw)
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['stop_frame'\]"):
        read_epic(write(rows, [f for f in fields if f != "stop_frame"]), "train", **kw)
    with pytest.raises(DatasetError, match="row 2: bad timestamp"):
        read_epic(write([{**rows[0], "start_timestamp": "soon"}]), "train", **kw)
    with pytest.raises(DatasetError, match="stops before it starts"):
        read_epic(write([{**rows[0], "start_frame": "999999"}]), "train", **kw)
    alone = tmp_path / "alone"
    alone.mkdir()
    write(rows).rename(alone / "EPIC_100_train.csv")
    with pytest.raises(DatasetError, match="give it with --noun-classes"):
        read_epic(alone / "EPIC_100_train.csv", "train")
    unlabelled = write(rows, [f for f in fields if f not in ("verb_class", "noun_class")], "test.csv")
    segs, vocab = read_epic(unlabelled, "test")
    assert vocab == {} and set(segs.columns["noun_id"]) == {-1}
    with pytest.raises(DatasetError, match="not found"):
        read_epic(tmp_path / "none.csv", "train")
    ego = json.load(open(ego_inputs["splits"]["train"]["annotations"]))
    ego["clips"][1]["noun_label"] = 3
    p = tmp_path / "ego.json"
    p.write_text(json.dumps(ego))
    with pytest.raises(DatasetError, match=r"clips\[1\]: noun_label 3 is 'bowl' in .* but the clip says"):
        read_ego4d(p, "train", ego_inputs["taxonomy"])
    del ego["clips"][0]["clip_uid"]
    p.write_text(json.dumps(ego))
    with pytest.raises(DatasetError, match=r"clips\[0\]: missing key\(s\) \['clip_uid'\]"):
        read_ego4d(p, "train", ego_inputs["taxonomy"])
    p.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_ego4d(p, "train", ego_inputs["taxonomy"])


def test_cli_errors_are_one_line(tmp_path):
    cp = run_xmic("cache", "info", tmp_path, check=False)
    assert cp.returncode == 2 and cp.stderr.startswith("error: ") and "not an xmic cache" in cp.stderr
    cp = run_xmic("cache", "import", tmp_path / "c", "--dataset", "epic", "--split", "train",
                  "--annotations", tmp_path / "a.csv", "--view", "nonsense", check=False)
    assert "expected NAME=PICKLE" in cp.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: zarr\nshards: 3\n")
    cp = run_xmic("cache", "import", tmp_path / "c", "--dataset", "epic", "--split", "train",
                  "--annotations", tmp_path / "a.csv", "--view", "a=b", "--config", cfg, check=False)
    assert "unknown key 'shards'" in cp.stderr
    cfg.write_text("backend: !!python/object/apply:os.system ['echo hi']\n")
    cp = run_xmic("cache", "import", tmp_path / "c", "--dataset", "epic", "--split", "train",
                  "--annotations", tmp_path / "a.csv", "--view", "a=b", "--config", cfg, check=False)
    assert "not a plain YAML config" in cp.stderr

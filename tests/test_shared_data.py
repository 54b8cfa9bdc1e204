"""Parsers against the real annotation files in ../shared/data (skipped when absent)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from helpers import SHARED_DATA, run_xmic
from xmic.cache import Cache, load_split
from xmic.cache.datasets import read_class_list, read_epic
from xmic.cache.verify import verify
from xmic.cache.vocab import load_vocab, read_embeddings_file

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                reason=f"real annotations not found at {SHARED_DATA}")
EPIC = SHARED_DATA / "epic-kitchens-100-annotations"
EGO = SHARED_DATA / "ego4d-fho-lta-taxonomy"


def test_epic_class_lists():
    nouns = read_class_list(EPIC / "EPIC_100_noun_classes.csv")
    verbs = read_class_list(EPIC / "EPIC_100_verb_classes.csv")
    assert len(nouns) == 300 and len(verbs) == 97
    assert nouns[:2] == ["tap", "spoon"] and verbs[:2] == ["take", "put"]
    assert "board:chopping" in nouns


def test_epic_validation_csv():
    segs, vocab = read_epic(EPIC / "EPIC_100_validation.csv", "validation")
    c = segs.columns
    assert len(segs) == 9668 and len(set(c["segment_id"])) == 9668
    assert len(set(c["video_id"])) == 138
    import csv
    info = {r["video_id"]: float(r["fps"]) for r in csv.DictReader(open(EPIC / "EPIC_100_video_info.csv"))}
    assert all(f == info[v] for f, v in zip(c["fps"], c["video_id"]))  # each video's own rate
    assert min(c["noun_id"]) >= 0 and max(c["noun_id"]) < 300 and max(c["verb_id"]) < 97
    i = c["segment_id"].index("P01_11_0")
    assert (c["start_frame"][i], c["stop_frame"][i], c["verb"][i], c["noun"][i]) == (1, 113, "take", "plate")
    assert c["stop_sec"][i] == pytest.approx(1.89) and c["fps"][i] == pytest.approx(59.94, abs=0.01)


def test_epic_train_subset_csv():
    d = EPIC / "UDA_annotations"
    segs, _ = read_epic(d / "EPIC_100_uda_source_train.csv", "train",
                        EPIC / "EPIC_100_noun_classes.csv", EPIC / "EPIC_100_verb_classes.csv",
                        EPIC / "EPIC_100_video_info.csv")
    assert len(segs) == 16115
    assert all(s < e or s == e for s, e in zip(segs.columns["start_frame"], segs.columns["stop_frame"]))


def test_ego4d_taxonomy_and_real_text_embeddings(tmp_path, small_cache):
    tax = EGO / "fho_lta_taxonomy.json"
    assert len(read_class_list(tax, "verbs")) == 115 and len(read_class_list(tax, "nouns")) == 478
    emb = read_embeddings_file(EGO / "taxonomy_clip_embeddings.pt", "nouns")
    assert emb.shape == (478, 512) and 8 < float(np.linalg.norm(emb, axis=1).mean()) < 13
    cp = run_xmic("cache", "import-text", small_cache.root, "--name", "noun", "--classes", tax,
                  "--field", "nouns", "--embeddings", EGO / "taxonomy_clip_embeddings.pt",
                  "--key", "nouns", check=False)  # the small cache's views are 16 wide
    assert cp.returncode == 2 and "width 512, but the cache's views have width [16]" in cp.stderr
    from xmic.cache import CacheConfig
    empty = Cache.create(tmp_path / "text-only", "ego4d", CacheConfig())  # no view yet
    run_xmic("cache", "import-text", empty.root, "--name", "noun", "--classes", tax,
             "--field", "nouns", "--embeddings", EGO / "taxonomy_clip_embeddings.pt", "--key", "nouns")
    v = load_vocab(Cache.open(empty.root), "noun")
    assert len(v.classes) == 478 and np.array_equal(v.embeddings, emb)


def test_import_real_epic_validation_with_partial_pickle(tmp_path):
    """Real annotations at full scale; a pickle covering 40 segments: the rest become failed rows."""
    segs, _ = read_epic(EPIC / "EPIC_100_validation.csv", "validation")
    rng = np.random.default_rng(0)
    keep = segs.columns["segment_id"][::240]
    pk = tmp_path / "val_hands.pkl"
    with open(pk, "wb") as f:
        pickle.dump({s: rng.standard_normal((4, 512)).astype(np.float32) for s in keep}, f)
    cache = tmp_path / "epic"
    cp = run_xmic("cache", "import", cache, "--dataset", "epic", "--split", "validation",
                  "--annotations", EPIC / "EPIC_100_validation.csv", "--view", f"hand_crop={pk}",
                  "--set", "shard_segments=1024")
    assert f"{9668 - len(keep)} segments missing from the pickle" in cp.stdout
    c = Cache.open(cache)
    assert verify(c) == []
    d = load_split(c, ["hand_crop"], "validation")
    assert d.segment_ids == keep and d.views["hand_crop"].features.shape == (4 * len(keep), 512)
    assert d.skipped == {"failed": 9668 - len(keep)}

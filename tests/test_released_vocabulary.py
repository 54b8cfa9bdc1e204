"""X-MIC's released EGTEA vocabulary, opt-in: ``[''] + names``, an empty-prompt class 0 that is
never a label but is scored; recorded in the vocabulary, shown by `cache info` and in the
evaluation's notes; the real classes score exactly as in the clean vocabulary."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from extract_data import TINY, make_egtea
from helpers import run_xmic
from xmic.cache import Cache
from xmic.cache.vocab import load_vocab


def test_the_released_egtea_vocabulary_scores_its_empty_class(tmp_path):
    w = make_egtea(tmp_path / "w")
    clean, released = tmp_path / "clean", tmp_path / "released"
    run_xmic("extract", "plan", clean, "--dataset", "egtea", "--split", "test", "--annotations",
             w["annotations"], "--root", w["root"], "--views", "full_frame")
    run_xmic("extract", "run", clean, "--model", TINY, "--weights", "random", "--workers", "0",
             "--device", "cpu")
    shutil.copytree(clean, released)
    run_xmic("extract", "text", clean, "--device", "cpu")
    cp = run_xmic("extract", "text", released, "--device", "cpu", "--released-vocabulary")
    assert "noun (3 classes)" in cp.stdout and "verb (3 classes)" in cp.stdout
    v = load_vocab(Cache.open(released), "noun.photo")
    assert v.classes == ["", "knife", "cutting board"] and v.label_offset == 1
    assert v.prompts[0] == "a photo of a " and "released vocabulary" in v.source["vocabulary"]
    assert "X-MIC's released vocabulary: [''] + 2 names" in run_xmic("cache", "info", released).stdout
    preds = {}
    for name, cache in (("clean", clean), ("released", released)):
        run = tmp_path / f"run-{name}"
        run_xmic("train", "--cache", cache, "--method", "zeroshot", "--split", "test", "--out",
                 run, "--device", "cpu", "--set", "heldout_fraction=0",
                 "--set", "model.classified_view=full_frame", "--set", "frames=16")
        m = json.loads(run_xmic("evaluate", run, "--cache", cache, "--split", "test", "--json",
                                "--device", "cpu").stdout)
        preds[name] = (m, pq.read_table(run / "eval" / "egtea-test" / "predictions.parquet").to_pylist())
    (mc, pc), (mr, pr) = preds["clean"], preds["released"]
    assert mc["classes"] == 2 and mr["classes"] == 3 and mc["n"] == mr["n"] == 3
    assert any("[''] + 2 names" in n for n in mr["notes"]) and not any("''" in n for n in mc["notes"])
    for a, b in zip(pc, pr):
        assert a["true_class"] == b["true_class"] and b["true_id"] == a["true_id"] + 1
        sa = dict(zip(a["top5_classes"], a["top5_scores"]))
        sb = dict(zip(b["top5_classes"], b["top5_scores"]))
        assert set(sb) == {"", *sa} and all(sb[k] == pytest.approx(sa[k], abs=1e-5) for k in sa)


def test_a_dataset_without_a_released_vocabulary_is_refused(tmp_path, small_cache):
    from xmic.extract.planning import PlanError
    from xmic.extract.vocabularies import extract_text
    from xmic.extract.config import ExtractConfig
    (small_cache.root / "extract_plan.json").write_text(json.dumps({"splits": {}, "classes": {"noun": ["a"]}}))
    with pytest.raises(PlanError, match="only EGTEA's adds a class"):
        extract_text(small_cache.root, ExtractConfig(), released=True, encoder=object())

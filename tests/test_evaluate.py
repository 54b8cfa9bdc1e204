"""Evaluation: metrics on hand-computed cases, class names and splits (with the real X-MIC lists
when ../shared/data is present), the table over seeds, refusals, and the CLI end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_DATA, run_xmic
from xmic.evaluate.classes import (ClassSplitError, derive_shared, normalize_name,
                                   read_class_splits)
from xmic.evaluate.metrics import compute_metrics, harmonic_mean
from xmic.evaluate.table import build_table, format_table

ANNO = SHARED_DATA / "xmic-anno"


def test_metrics_hand_computed():
    scores = np.array([[3, 1, 0, 0],    # true 0: right
                       [1, 1, 0, 0],    # true 1: tie 0/1 -> lower index 0: wrong
                       [0, 2, 1, 0],    # true 2: wrong (1), top-2 hit
                       [0, 0, 1, 2],    # true 3: right
                       [5, 0, 0, 4]])   # true 3: wrong, top-2 hit
    labels = np.array([0, 1, 2, 3, 3])
    m = compute_metrics(scores, labels, {"exact": np.array([True, True, False, False])})
    assert m["top1"] == pytest.approx(40.0) and m["top5"] == 100.0  # 4 classes: top-4 covers all
    assert m["mean_class_acc"] == pytest.approx((100 + 0 + 0 + 50) / 4)
    assert m["shared_exact"] == pytest.approx(50.0) and m["novel_exact"] == pytest.approx(100 / 3)
    assert m["shared_exact_class_mean"] == pytest.approx(50.0)
    assert m["novel_exact_class_mean"] == pytest.approx(25.0)
    assert m["hm_exact"] == pytest.approx(2 * 50 * (100 / 3) / (50 + 100 / 3))


def test_metrics_edge_cases():
    # a class without samples is left out of the class mean; empty novel set gives None
    scores = np.eye(6)[[0, 0, 1]] * 1.0
    m = compute_metrics(scores, np.array([0, 0, 2]), {"exact": np.ones(6, bool)})
    assert m["mean_class_acc"] == pytest.approx(50.0)   # classes 0 (100) and 2 (0)
    assert m["novel_exact"] is None and m["hm_exact"] is None and m["novel_exact_class_mean"] is None
    top = np.arange(6, dtype=float)[None].repeat(2, 0)
    assert compute_metrics(top, np.array([0, 1]))["top5"] == 50.0  # class 0 is 6th of 6
    m = compute_metrics(np.array([[1.0, 0.0]]), np.array([1]), {"e": np.array([True, False])})
    assert m["top5"] == 100.0 and m["shared_e"] is None  # fewer than 5 classes: top-2
    assert harmonic_mean(0.0, 80.0) == 0.0 and harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(None, 50.0) is None and harmonic_mean(50.0, 50.0) == 50.0


@pytest.mark.parametrize("raw,want", [
    ("board:chopping", "chopping board"), ("pan:dust", "dust pan"),
    ("machine:sous:vide", "vide sous machine"), ("turn-on", "turn on"), ("put-down", "put down"),
    ("spoon_(spoon,_spoonful)", "spoon"), ("adjust_(regulate,_increase/reduce,_change)", "adjust"),
    ("chopping_board", "chopping board"), ("use_to", "use"), ("end-of", "end"),
    ("bring into", "bring"), ("  Knife  ", "knife")])
def test_normalize_name(raw, want):
    assert normalize_name(raw) == want


def test_derive_and_read_splits(tmp_path):
    src = ["board:chopping", "knife", "turn-on"]
    tgt = ["chopping_board", "knife_(knife,_machete)", "door", "turn_on"]
    assert derive_shared(src, tgt) == {"exact": [True, True, False, True]}
    (tmp_path / "ego_epic_common_exact_noun.txt").write_text("chopping_board\nknife_(knife,_machete)\n")
    (tmp_path / "ego_epic_non_common_exact_noun.txt").write_text("door\nturn_on\n")
    (tmp_path / "ego_epic_common_noun.txt").write_text("door\n")
    got = read_class_splits(tmp_path, "ego4d", "epic", "noun", tgt)
    assert got == {"exact": [True, True, False, False], "default": [False, False, True, False]}
    (tmp_path / "ego_epic_common_semantic_noun.txt").write_text("gate\n")
    with pytest.raises(ClassSplitError, match=r"semantic lists .* match no class.*several\): gate"):
        read_class_splits(tmp_path, "ego4d", "epic", "noun", tgt)
    with pytest.raises(ClassSplitError, match="no epic_ego"):
        read_class_splits(tmp_path, "epic", "ego4d", "noun", src)
    # names that SPEC's rule merges stay apart when the raw names tell them apart
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "ego_epic_common_noun.txt").write_text("nut_(food)\n")
    (tmp_path / "x" / "ego_epic_non_common_noun.txt").write_text("nut_(tool)\n")
    assert read_class_splits(tmp_path / "x", "ego4d", "epic", "noun",
                             ["nut_(tool)", "nut_(food)"]) == {"default": [False, True]}


@pytest.mark.skipif(not ANNO.is_dir(), reason=f"X-MIC lists not found at {ANNO}")
@pytest.mark.parametrize("label", ["noun", "verb"])
def test_real_xmic_lists_cover_each_vocabulary(label):
    from xmic.cache.datasets import read_class_list
    epic = read_class_list(SHARED_DATA / "epic-kitchens-100-annotations" /
                           f"EPIC_100_{label}_classes.csv")
    got = read_class_splits(ANNO, "epic", "ego4d", label, epic)
    assert set(got) == {"default", "exact", "semantic"}
    want = {"noun": {"default": 149, "exact": 163, "semantic": 213},
            "verb": {"default": 49, "exact": 51, "semantic": 69}}[label]
    assert {k: sum(v) for k, v in got.items()} == want
    for crit in ("", "_exact", "_semantic"):  # common + non_common = the vocabulary, once each
        names = [n for part in ("common", "non_common")
                 for n in (ANNO / f"epic_ego_{part}{crit}_{label}.txt").read_text().splitlines() if n.strip()]
        assert sorted(normalize_name(n) for n in names) == sorted(normalize_name(n) for n in epic)
        ego = [n for part in ("common", "non_common")
               for n in (ANNO / f"ego_epic_{part}{crit}_{label}.txt").read_text().splitlines() if n.strip()]
        assert len(ego) == {"noun": 521, "verb": 117}[label] and len(set(ego)) == len(ego)
        masks = read_class_splits(ANNO, "ego4d", "epic", label, ego)  # v2 vocabulary = the lists
        assert all(len(m) == len(ego) for m in masks.values())
    tax = read_class_list(SHARED_DATA / "ego4d-fho-lta-taxonomy" / "fho_lta_taxonomy.json",
                          label + "s")
    assert {normalize_name(n) for n in tax} <= {normalize_name(n) for n in ego}  # v1 within v2


def fake_metrics(seed, method, dataset, label, top1, shared, novel, in_dataset):
    return {"method": method, "source_dataset": "epic", "dataset": dataset, "label": label,
            "seed": seed, "top1": top1, "mean_class_acc": top1 - 5, "in_dataset": in_dataset,
            "shared_exact": shared, "novel_exact": novel, "hm_exact": harmonic_mean(shared, novel)}


def test_table_mean_and_std_over_seeds(tmp_path):
    ms = []
    for seed, (a, b) in zip((1, 2, 3), ((40, 20), (50, 30), (60, 40))):
        ms.append(fake_metrics(seed, "xmic", "epic", "noun", a, a, None, True))
        ms.append(fake_metrics(seed, "xmic", "ego4d", "noun", b, b + 10, b - 10, False))
    ms.append(fake_metrics(0, "zeroshot", "ego4d", "noun", 10, 12, 8, False))
    header, body = build_table(ms)
    row = dict(zip(header, body[0]))
    assert body[0][:3] == ["xmic", "epic", "3"]
    assert row["noun epic top-1"] == "50.0 ± 10.0" and row["noun ego4d shared"] == "40.0 ± 10.0"
    assert row["noun epic novel"] == "–"
    hms = [harmonic_mean(a, b) for a, b in ((40, 20), (50, 30), (60, 40))]
    import statistics
    assert row["noun HM in/ego4d"] == f"{statistics.mean(hms):.1f} ± {statistics.stdev(hms):.1f}"
    zs = dict(zip(header, body[1]))
    assert zs["noun ego4d HM"] == "9.6" and zs["noun HM in/ego4d"] == "–"
    for fmt in ("md", "csv", "latex"):
        text = format_table(header, body, fmt)
        assert "50.0" in text and ("$\\pm$" in text if fmt == "latex" else "±" in text)


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    from xmic_inputs import make_xmic_inputs
    base = tmp_path_factory.mktemp("xd")
    epic = make_xmic_inputs(base / "epic-in", "epic", ("train", "validation"), 40, dim=64)
    ego = make_xmic_inputs(base / "ego-in", "ego4d", ("val",), 30, dim=64)
    for split, sf in epic["splits"].items():
        run_xmic("cache", "import", base / "epic", "--dataset", "epic", "--split", split,
                 "--annotations", sf["annotations"], "--view", f"hand_crop={sf['hand_crop']}",
                 "--view", f"full_frame={sf['full_frame']}")
    sf = ego["splits"]["val"]
    run_xmic("cache", "import", base / "ego4d", "--dataset", "ego4d", "--split", "val",
             "--annotations", sf["annotations"], "--taxonomy", ego["taxonomy"],
             "--view", f"hand_crop={sf['hand_crop']}", "--view", f"full_frame={sf['full_frame']}")
    run_xmic("cache", "import-text", base / "epic", "--name", "noun", "--classes",
             epic["noun_classes"], "--embeddings", epic["noun_text"])
    run_xmic("cache", "import-text", base / "ego4d", "--name", "noun", "--classes", ego["taxonomy"],
             "--field", "nouns", "--embeddings", ego["noun_text"])
    return base


def test_cli_import_train_evaluate_table(two_caches, tmp_path):
    base = two_caches
    run_xmic("train", "--cache", base / "epic", "--label", "noun", "--method", "xmic", "--out",
             tmp_path / "run", "--epochs", "2", "--seeds", "1,2", "--device", "cpu",
             "--set", "batch_size=16")
    for s in (1, 2):
        run = tmp_path / "run" / f"seed-{s}"
        cp = run_xmic("evaluate", run, "--cache", base / "epic", "--split", "validation")
        assert "xmic epic -> epic validation" in cp.stdout and "novel –" in cp.stdout
        cp = run_xmic("evaluate", run, "--cache", base / "ego4d", "--split", "val", "--json")
        m = json.loads(cp.stdout)
        assert m["dataset"] == "ego4d" and not m["in_dataset"] and m["n"] == 29
        assert m["shared_exact_classes"] == 6  # spoon plate knife bowl cup lid
        assert m["shared_exact"] is not None and m["novel_exact"] is not None
        out = run / "eval" / "ego4d-val"
        for f in ("metrics.json", "predictions.parquet", "per_class_accuracy.png", "confusion.png",
                  "reliability.png"):
            assert (out / f).exists(), f
    import pyarrow.parquet as pq
    pred = pq.read_table(tmp_path / "run" / "seed-1" / "eval" / "ego4d-val" / "predictions.parquet")
    assert pred.num_rows == 29 and len(pred["top5_classes"][0].as_py()) == 5
    vocab = json.loads(Path(base / "ego4d" / "vocab" / "noun" / "vocab.json").read_text())
    assert pred["top5_classes"][0].as_py()[0] in vocab["names"]  # shown as prompted
    assert "spoon" in vocab["names"] and "spoon_(spoon,_spoonful)" in vocab["classes"]
    assert pred["true_key"][0].as_py() in vocab["classes"]
    assert not any("(" in n for row in pred["top5_classes"].to_pylist() for n in row)
    cp = run_xmic("evaluate", "table", tmp_path / "run", "--format", "md")
    assert "| xmic | epic | 2 |" in cp.stdout and "noun HM in/ego4d" in cp.stdout
    assert cp.stdout.count("±") >= 5


def test_fingerprint_mismatch_refused(two_caches, tmp_path):
    import shutil
    base = two_caches
    run_xmic("train", "--cache", base / "epic", "--label", "noun", "--out", tmp_path / "r",
             "--epochs", "1", "--device", "cpu", "--set", "batch_size=16")
    other = tmp_path / "other"
    shutil.copytree(base / "ego4d", other)
    vj = other / "views" / "hand_crop" / "view.json"
    rec = json.loads(vj.read_text())
    rec["fingerprint"]["preprocess"]["size"] = 336
    vj.write_text(json.dumps(rec))
    cp = run_xmic("evaluate", tmp_path / "r", "--cache", other, "--split", "val", check=False)
    assert cp.returncode == 2 and "preprocess.size: 224 != 336" in cp.stderr
    assert cp.stderr.count('"size"') == 2  # both fingerprints shown


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from xmic.evaluate.plots import plot_all
    from xmic.train.plots import plot_curve
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook user's choice
    try:
        rng = np.random.default_rng(0)
        scores = rng.standard_normal((12, 3))
        pngs = plot_all(scores, np.exp(scores) / np.exp(scores).sum(1, keepdims=True),
                        rng.integers(0, 3, 12), ["a", "b", "c"], np.array([1, 0, 1], bool),
                        "exact", "t")
        plot_curve([{"epoch": 1, "train_loss": 1.0, "train_top1": 50.0}], tmp_path / "c.png", "t")
        assert all(p[:4] == b"\x89PNG" for p in pngs.values())
        assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)

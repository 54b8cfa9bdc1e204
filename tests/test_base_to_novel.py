"""Base-to-novel within a dataset: the class split by each rule, training on base-class
segments only, and base / novel scores checked against a direct computation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import run_xmic
from train_data import make_train_cache
from xmic.cache import Cache, load_split
from xmic.train.class_split import ClassSplitError, make_split
from xmic.train.config import ClassesConfig, TrainConfig


def test_the_rules_split_as_documented(tmp_path):
    classes = [f"c{i}" for i in range(7)]
    labels = np.array([0, 0, 0, 1, 2, 2, 4, 4, 4, 4, 5, 6, 6])  # class 3 never trains
    s = make_split(classes, labels, ClassesConfig(train_on="base"), "noun")
    assert s.base == ("c0", "c1", "c2") and s.novel == ("c4", "c5", "c6")  # CoOp: ceil(6/2)
    f = make_split(classes, labels, ClassesConfig(train_on="base", rule="frequency"), "noun")
    assert f.base == ("c4", "c0", "c2") and f.novel == ("c6", "c1", "c5")  # ties by id
    (tmp_path / "base_noun.txt").write_text("c1\nc3\n")
    (tmp_path / "novel_noun.txt").write_text("c0\n")
    lists = ClassesConfig(train_on="base", rule="lists", lists=str(tmp_path))
    assert make_split(classes, labels, lists, "noun").base == ("c1", "c3")
    (tmp_path / "novel_noun.txt").write_text("c1\n")
    with pytest.raises(ClassSplitError, match="both base and novel"):
        make_split(classes, labels, lists, "noun")
    with pytest.raises(ClassSplitError, match="no novel"):
        make_split(classes, np.array([0, 0]), ClassesConfig(train_on="base"), "noun")
    with pytest.raises(ValueError, match="linear has a classifier of its training classes"):
        TrainConfig(method="linear", classes=ClassesConfig(train_on="base"))


def test_train_on_base_and_score_base_and_novel_apart(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=60, classes=6, dim=16, mode="constant",
                             noise=0.5, splits=("train", "validation"))
    run = tmp_path / "run"
    out = run_xmic("train", "--cache", cache.root, "--method", "xmic", "--out", run,
                   "--epochs", "2", "--device", "cpu", "--set", "heldout_fraction=0",
                   "--set", "classes.train_on=base").stdout
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    train_labels = load_split(cache, ["hand_crop"], "train").segments["noun_id"].to_numpy()
    present = sorted(set(train_labels.tolist()))
    m = -(-len(present) // 2)
    base_ids, novel_ids = present[:m], present[m:]
    names = [f"class{c}" for c in range(6)]
    assert ck["class_split"] == {"rule": "id-half", "base": [names[i] for i in base_ids],
                                 "novel": [names[i] for i in novel_ids]}
    assert ck["classes"] == [names[i] for i in base_ids]
    n_base = int(np.isin(train_labels, base_ids).sum())
    assert f"xmic on {cache.root} split train: {n_base} training segments" in out, out
    assert "base-to-novel (id-half): trains on" in out
    # the scores over the whole vocabulary, computed directly
    from xmic.evaluate.run import score_split
    from xmic.train.inference import load_run
    model, cfg, ckpt = load_run(run, "cpu")
    scores, labels, _, _ = score_split(model, cfg, ckpt, run, Cache.open(cache.root),
                                       "validation", "cpu")
    for part, ids in (("base", base_ids), ("novel", novel_ids)):
        cp = run_xmic("evaluate", run, "--cache", cache.root, "--split", "validation",
                      "--classes", part, "--json")
        got = json.loads(cp.stdout[cp.stdout.index("{"):])
        mask = np.isin(labels, ids)
        pred = np.asarray(ids)[scores[mask][:, ids].argmax(1)]
        assert got["n"] == int(mask.sum()) and got["classes"] == len(ids)
        assert got["top1"] == pytest.approx(100 * float((pred == labels[mask]).mean()))
        assert (run / "eval" / f"epic-validation-{part}" / "metrics.json").exists()
    cp = run_xmic("evaluate", run, "--cache", cache.root, "--split", "validation", "--json")
    assert json.loads(cp.stdout[cp.stdout.index("{"):])["classes"] == 6  # all: every class
    plain = tmp_path / "plain"
    run_xmic("train", "--cache", cache.root, "--method", "zeroshot", "--out", plain,
             "--device", "cpu")
    cp = run_xmic("evaluate", plain, "--cache", cache.root, "--split", "validation",
                  "--classes", "novel", check=False)
    assert cp.returncode == 2 and "was not trained base-to-novel" in cp.stderr, cp.stderr


def test_a_base_to_novel_grid_plans_runs_and_tables(tmp_path):
    """protocol: base-to-novel: every run trains on base classes and is scored on its own
    held-out split twice (base, novel); the table's HM is per seed; linear is refused."""
    import yaml

    from xmic.evaluate.metrics import harmonic_mean
    cache = make_train_cache(tmp_path / "epic", n=40, classes=6, dim=16, mode="constant",
                             noise=0.5, splits=("train", "validation"))
    r = {"caches": {"epic": str(cache.root)}, "sources": {"epic": "train"},
         "targets": {"epic": "validation"}, "labels": ["noun"], "protocol": "base-to-novel",
         "methods": {"zeroshot": {}, "xmic": {}}, "seeds": [0, 1],
         "train": {"epochs": 1, "device": "cpu", "heldout_fraction": 0.0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    g = tmp_path / "g"
    assert "4 runs, 8 evaluations" in run_xmic("grid", "plan", g, "--recipe",
                                               tmp_path / "r.yaml").stdout
    plan = json.loads((g / "grid.json").read_text())
    assert all(x["config"]["classes"]["train_on"] == "base" for x in plan["runs"])
    assert [t["classes"] for t in plan["runs"][0]["targets"]] == ["base", "novel"]
    run_xmic("grid", "run", g)
    table = run_xmic("grid", "table", g).stdout
    assert "| method | EPIC base | EPIC novel | EPIC HM |" in table, table
    vals = {}
    for seed in (0, 1):
        d = g / "runs" / f"epic-noun-xmic-seed{seed}" / "eval"
        b = json.loads((d / "epic-validation-base" / "metrics.json").read_text())["top1"]
        n = json.loads((d / "epic-validation-novel" / "metrics.json").read_text())["top1"]
        vals[seed] = (b, n, harmonic_mean(b, n))
    row = next(x for x in table.splitlines() if x.startswith("| xmic"))
    hm = [v[2] for v in vals.values()]
    assert f"{np.mean(hm):.1f} ± {np.std(hm, ddof=1):.1f}" in row, (row, vals)
    tex = run_xmic("grid", "table", g, "--format", "latex").stdout
    assert r"\multicolumn{3}{c}{EPIC}" in tex and "Base & Novel & HM" in tex
    # --ci: base and novel resample their own evaluations' segments, the HM pairs them per resample
    ci_table = run_xmic("grid", "table", g, "--ci", "--ci-samples", "200").stdout
    ci_row = next(x for x in ci_table.splitlines() if x.startswith("| xmic"))
    assert ci_row.count("[") == 3 and "paired bootstrap" in ci_table, ci_table
    import pyarrow.parquet as pq

    from xmic.evaluate.bootstrap import Outcomes, interval, samples
    from xmic.grid.significance import significance_frame
    frame = significance_frame(g, n=200).set_index(["method", "column"])
    got = {}
    for part in ("base", "novel"):
        preds = [pq.read_table(g / "runs" / f"epic-noun-{m}-seed{seed}" / "eval" /
                               f"epic-validation-{part}" / "predictions.parquet").to_pandas()
                 for m in ("zeroshot", "xmic") for seed in (0, 1)]
        assert all(list(p["segment_id"]) == list(preds[0]["segment_id"]) for p in preds)
        correct = [np.array([t[0] == y for t, y in zip(p["top5_ids"], p["true_id"])])
                   for p in preds]
        labels = preds[0]["true_id"].to_numpy()
        got[part] = samples({"zeroshot": Outcomes(np.stack(correct[:2]), labels, {}),
                             "xmic": Outcomes(np.stack(correct[2:]), labels, {})},
                            "top1", n=200, seed=0, key=f"noun/epic/epic/{part}")
        lo, hi = interval(got[part]["xmic"])
        row = frame.loc[("xmic", part)]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
        assert lo <= row["mean"] <= hi
    b, n = got["base"]["xmic"], got["novel"]["xmic"]
    hm = np.where(b + n > 0, 2 * b * n / np.where(b + n > 0, b + n, 1), 0.0)
    row = frame.loc[("xmic", "b2n-hm")]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(interval(hm))
    # the figure plots base (x) against novel (y) per method and dataset
    from xmic.grid.figure import _base_novel_points
    from xmic.grid.plan import load_grid
    from xmic.grid.results import grid_results
    grid = load_grid(g)
    keys, points, notes = _base_novel_points(grid_results(g, grid)[0], grid, "noun",
                                             ["zeroshot", "xmic"], {})
    assert keys == ["EPIC"] and not notes and set(points) == {("zeroshot", "EPIC"),
                                                              ("xmic", "EPIC")}
    xs, ys = points[("xmic", "EPIC")]
    assert sorted(xs) == sorted(v[0] for v in vals.values())
    assert sorted(ys) == sorted(v[1] for v in vals.values())
    r["methods"] = {"linear": {}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    cp = run_xmic("grid", "plan", tmp_path / "g2", "--recipe", tmp_path / "r.yaml", check=False)
    assert cp.returncode == 2 and "linear has a classifier of its training classes" in cp.stderr


def test_a_grid_keeps_its_protocol_when_extended(tmp_path):
    import yaml
    cache = make_train_cache(tmp_path / "epic", n=24, classes=4, dim=16,
                             splits=("train", "validation"))
    r = {"caches": {"epic": str(cache.root)}, "sources": {"epic": "train"},
         "targets": {"epic": "validation"}, "labels": ["noun"], "methods": {"zeroshot": {}},
         "seeds": [0]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    run_xmic("grid", "plan", tmp_path / "g", "--recipe", tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**r, "protocol": "base-to-novel"}))
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", tmp_path / "r.yaml", "--extend",
                  check=False)
    assert cp.returncode == 2 and "planned with protocol cross-dataset" in cp.stderr, cp.stderr


def test_evaluate_table_keeps_base_and_novel_apart(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=40, classes=6, dim=16, mode="constant",
                             splits=("train", "validation"))
    run = tmp_path / "run"
    run_xmic("train", "--cache", cache.root, "--method", "zeroshot", "--out", run, "--device",
             "cpu", "--set", "classes.train_on=base")
    for part in ("base", "novel"):
        run_xmic("evaluate", run, "--cache", cache.root, "--split", "validation", "--classes",
                 part)
    header = run_xmic("evaluate", "table", run).stdout.splitlines()[0]
    assert "noun epic-base top-1" in header and "noun epic-novel top-1" in header, header

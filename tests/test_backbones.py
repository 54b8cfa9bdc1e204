"""Several backbones in one grid: caches named DATASET@BACKBONE, two tiny models of different
widths; runs per backbone, never mixing caches of different models; results and tables carry
the backbone, side by side with --by backbone."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from helpers import run_xmic
from train_data import make_train_cache
from xmic.cache import Cache
from xmic.cache import fingerprint as F


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory):
    base = tmp_path_factory.mktemp("backbones")
    caches = {}
    for name, dim in (("small", 16), ("wide", 32)):
        model = F.model_identity(f"tiny-{name}", f"{name}-sha", "3.3.0", "2.14.1", True)
        caches[f"epic@{name}"] = make_train_cache(
            base / f"epic-{name}", n=24, classes=4, dim=dim, splits=("train", "validation"),
            mode="constant", noise=0.5, model=model).root
        caches[f"ego4d@{name}"] = make_train_cache(
            base / f"ego4d-{name}", n=20, classes=4, dim=dim, seed=1, splits=("train", "val"),
            dataset="ego4d", mode="constant", noise=0.5, model=model,
            class_names=["class2", "class3", "door", "phone"]).root
    return base, caches


def test_one_grid_over_two_backbones(tmp_path, two_backbones):
    base, caches = two_backbones
    r = {"caches": {k: str(v) for k, v in caches.items()}, "sources": {"epic": "train"},
         "targets": {"epic": "validation", "ego4d": "val"}, "labels": ["noun"],
         "methods": {"zeroshot": {}, "xmic": {}}, "seeds": [0],
         "train": {"epochs": 1, "device": "cpu", "heldout_fraction": 0.0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    g = tmp_path / "g"
    out = run_xmic("grid", "plan", g, "--recipe", tmp_path / "r.yaml").stdout
    assert "4 runs, 8 evaluations" in out, out
    plan = json.loads((g / "grid.json").read_text())
    for run in plan["runs"]:  # every cache a run reads is of its own backbone's model
        b = run["backbone"]
        assert run["id"].startswith(f"epic-{b}-noun-")
        assert run["cache"] == str(caches[f"epic@{b}"])
        assert {t["cache"] for t in run["targets"]} == {str(caches[f"epic@{b}"]),
                                                        str(caches[f"ego4d@{b}"])}
        fps = {Cache.open(c).view("hand_crop")["fingerprint"]["model"]["name"]
               for c in [run["cache"], *(t["cache"] for t in run["targets"])]}
        assert fps == {f"tiny-{b}"}
    run_xmic("grid", "run", g)
    table = run_xmic("grid", "table", g).stdout
    for row in ("zeroshot [small]", "zeroshot [wide]", "xmic [small]", "xmic [wide]"):
        assert f"| {row} |" in table, table
    df = pd.read_parquet(g / "results.parquet")
    assert set(df["backbone"]) == {"small", "wide"}
    side = run_xmic("grid", "table", g, "--by", "backbone").stdout
    head = next(x for x in side.splitlines() if x.startswith("| method"))
    assert "small: EPIC→EPIC" in head and "wide: EPIC→Ego4D" in head, head
    assert "| xmic |" in side and "[small]" not in side
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(run_xmic("grid", "table", g, "--format",
                                                    "csv").stdout)))
    assert {(r["method"], r["backbone"]) for r in rows} == {
        (m, b) for m in ("zeroshot", "xmic") for b in ("small", "wide")}
    tex = run_xmic("grid", "table", g, "--format", "latex").stdout
    assert r"X-MIC [small]" in tex or r"X-MIC {[}small{]}" in tex
    ci_table = run_xmic("grid", "table", g, "--ci", "--ci-samples", "100").stdout
    import re
    assert "paired bootstrap" in ci_table
    assert re.search(r"\| xmic \[wide\] \| [\d.]+ \[[\d.]+, [\d.]+\] \|", ci_table), ci_table
    side_ci = run_xmic("grid", "table", g, "--by", "backbone", "--ci", "--ci-samples",
                       "100").stdout

    def cell(text, row, column):
        lines = [x.split(" | ") for x in text.splitlines() if x.startswith("| ")]
        head = next(x for x in lines if x[0] == "| method")
        return next(x for x in lines if x[0] == f"| {row}")[head.index(column)]
    # a backbone's cell resamples that backbone's runs alone: the same interval either way
    # (one seed, the same segments)
    got = cell(side_ci, "xmic", "wide: EPIC→EPIC")
    assert re.fullmatch(r"\**[\d.]+ \[[\d.]+, [\d.]+\]\**", got), got
    assert got.strip("*") == cell(ci_table, "xmic [wide]", "EPIC→EPIC").strip("*")
    import xmic
    ci = xmic.results(g, ci=True, samples=100)
    assert "xmic [wide]" in set(ci["method"])


def test_caches_of_one_backbone_made_by_different_models_are_refused(tmp_path, two_backbones):
    base, caches = two_backbones
    mixed = {"epic@small": str(caches["epic@small"]), "ego4d@small": str(caches["ego4d@wide"])}
    r = {"caches": mixed, "sources": {"epic": "train"}, "targets": {"epic": "validation",
                                                                     "ego4d": "val"},
         "labels": ["noun"], "methods": {"zeroshot": {}}, "seeds": [0]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", tmp_path / "r.yaml", check=False)
    assert cp.returncode == 2 and "backbone small: its caches were made by different models" \
        in cp.stderr, cp.stderr
    r["caches"] = {"epic": str(caches["epic@small"]), "epic@wide": str(caches["epic@wide"])}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", tmp_path / "r.yaml", check=False)
    assert cp.returncode == 2 and "with and without a backbone" in cp.stderr
    cp = run_xmic("grid", "plan", tmp_path / "g3", "--recipe", "backbones",
                  "--cache", f"epic@small={caches['epic@small']}",
                  "--cache", f"ego4d@small={caches['ego4d@small']}",
                  "--cache", f"epic@wide={caches['epic@wide']}",
                  "--cache", f"ego4d@wide={caches['ego4d@wide']}", "--seeds", "0")
    assert "16 runs" in cp.stdout, cp.stdout  # 2 backbones x 2 sources x 2 labels x 2 rows

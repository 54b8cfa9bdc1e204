"""Results for papers and notebooks, on a small generated grid: tidy results.parquet and
xmic.results(), the paper-layout tables (markdown, CSV, LaTeX) and the figure built from them,
xmic.load_run().predict / .score, and `xmic evaluate` writing the same rows."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

import xmic
from helpers import run_xmic
from test_grid import recipe, world  # noqa: F401  (the generated caches)
from xmic.evaluate.results import COLUMNS

pytestmark = pytest.mark.xdist_group("results-grid")  # one worker builds the module's grid once


@pytest.fixture(scope="module")
def grid(tmp_path_factory, world):  # noqa: F811
    tmp = tmp_path_factory.mktemp("results")
    g = tmp / "g"
    rec = recipe(tmp, world, seeds=[0, 1], sources={"epic": "train", "ego4d": "train"},
                 methods={"xmic": {}, "zeroshot": {}, "linear": {}})  # an order of their own
    run_xmic("grid", "plan", g, "--recipe", rec)
    run_xmic("grid", "run", g)
    return g


def test_results_are_one_row_per_run_target_and_metric(grid):
    df = xmic.results(grid)
    assert list(df.columns) == list(COLUMNS) and (grid / "results.parquet").exists()
    assert list(df["method"].cat.categories) == ["xmic", "zeroshot", "linear"]  # the recipe's
    plan = json.loads((grid / "grid.json").read_text())
    scored = sum(len(r["targets"]) for r in plan["runs"])
    assert scored == 2 * 2 * (2 + 2 + 1)  # the probe has no classifier for another vocabulary
    assert df.groupby(["run", "target_dataset"]).ngroups == scored
    for r in plan["runs"][:4]:  # every value is the evaluation's own
        for t in r["targets"]:
            m = json.loads((grid / r["dir"] / "eval" / f"{t['dataset']}-{t['split']}" /
                            "metrics.json").read_text())
            mine = df[(df["run"] == r["id"]) & (df["target_dataset"] == t["dataset"])]
            got = dict(zip(mine["metric"] + "/" + mine["criterion"].fillna("-"), mine["value"]))
            assert got["top1/-"] == pytest.approx(m["top1"])
            assert got["class_mean/-"] == pytest.approx(m["mean_class_acc"])
            if m.get("novel_exact") is not None:
                assert got["novel/exact"] == pytest.approx(m["novel_exact"])
    assert pd.read_parquet(grid / "results.parquet").shape == df.shape


def _expected(df, method, source, target, metric="top1"):
    v = df[(df["method"] == method) & (df["source_dataset"] == source) & (df["label"] == "noun")
           & (df["target_dataset"] == target) & (df["metric"] == metric)]["value"]
    return v.mean(), v.std(ddof=1)


def test_paper_layout_in_markdown_csv_and_latex(grid):
    df = xmic.results(grid)
    md = run_xmic("grid", "table", grid).stdout
    head = ("| method | EPIC→EPIC | EPIC→Ego4D | Ego4D→Ego4D | Ego4D→EPIC | HM EPIC+Ego4D | "
            "HM Ego4D+EPIC |")
    assert head in md, md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "method" not in ln]
    assert [r.split(" | ")[0][2:] for r in rows] == ["xmic", "zeroshot", "linear"]
    mean, std = _expected(df, "xmic", "epic", "ego4d")
    assert f"{mean:.1f} ± {std:.1f}" == rows[0].split(" | ")[2]
    assert rows[2].split(" | ")[2] == "n/a"  # the probe is not scored across datasets
    assert "n/a: not scored (the method has no classifier for that vocabulary)" in md

    text = run_xmic("grid", "table", grid, "--format", "csv").stdout.split("(table:")[0]
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:5] == ["label", "method", "EPIC→EPIC mean", "EPIC→EPIC std", "EPIC→EPIC seeds"]
    assert sum(r[0] == "label" for r in table) == 1  # one header row for every label
    xm = next(r for r in table if r[1] == "xmic")
    i = table[0].index("EPIC→Ego4D mean")
    assert float(xm[i]) == pytest.approx(mean, abs=1e-3) and float(xm[i + 1]) == pytest.approx(std, abs=1e-3)
    assert xm[i + 2] == "2"

    run_xmic("grid", "table", grid, "--format", "latex", "--metric", "HM")
    tex = (grid / "table.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\multicolumn{2}{c}{EPIC $\rightarrow$}" in tex
    body = tex[tex.index(r"\midrule"):tex.index(r"\bottomrule")].splitlines()[1:]
    cols = tex.splitlines()[1].count("c")  # \begin{tabular}{lcccccc}
    assert all(ln.count("&") == cols for ln in body), body  # every row as wide as the header
    assert tex.count("{") == tex.count("}")
    # rows by their display names; the best of each column bold and the second underlined,
    # each only when one row holds it at the shown precision (a tie is not a win)
    assert [ln.split(" & ")[0] for ln in body] == ["X-MIC", "Zero-shot CLIP", "Linear probe"]
    for j in range(1, cols + 1):
        cells = [ln.rstrip(" \\").split(" & ")[j] for ln in body]
        means = [round(float(re.sub(r"\\(textbf|underline)\{|\}", "", c).split()[0]), 1)
                 for c in cells if c not in ("--", "n/a")]
        shown = sorted(set(means), reverse=True)
        want_bold = [shown[0]] if shown and means.count(shown[0]) == 1 else []
        want_under = [shown[1]] if len(shown) > 1 and means.count(shown[1]) == 1 else []
        bold = [float(c[8:].split()[0]) for c in cells if c.startswith(r"\textbf")]
        under = [float(c[11:].split()[0]) for c in cells if c.startswith(r"\underline")]
        assert bold == want_bold and under == want_under, cells
    from xmic.grid.table import format_latex, ranks
    assert ranks([50.04, 50.01, 40.0]) == (None, 40.0)  # 50.0 twice at the shown precision
    assert ranks([60.0, 50.0, 50.0]) == (60.0, None)
    one = format_latex("noun", "top-1", [("score", "epic", "epic")],
                       {"xmic-alpha-4": {("score", "epic", "epic"): (61.0, 0.0, 1)}},
                       {"xmic-alpha-4": "X-MIC (alpha_4 & more)"})
    assert r"X-MIC (alpha\_4 \& more) & \textbf{61.0}" in one
    png = (grid / "table.png").read_bytes()
    assert png[:4] == b"\x89PNG"


def test_load_run_predicts_and_scores_like_evaluate(grid, world):  # noqa: F811
    from xmic.cache import Cache
    from xmic.train.data import load_bank
    plan = json.loads((grid / "grid.json").read_text())
    r = next(r for r in plan["runs"] if r["method"] == "xmic" and r["source"] == "epic")
    run = xmic.load_run(grid / r["dir"])
    assert run.method == "xmic" and "xmic" in repr(run)
    pred = run.predict(world["ego4d"], "val", k=3)
    saved = pd.read_parquet(grid / r["dir"] / "eval" / "ego4d-val" / "predictions.parquet")
    assert pred["segment_id"].tolist() == saved["segment_id"].tolist()
    assert pred["class_1"].tolist() == [t[0] for t in saved["top5_classes"]]
    assert np.allclose(pred["score_1"], [t[0] for t in saved["top5_scores"]], atol=1e-5)
    assert list(pred.columns[:4]) == ["segment_id", "label", "class_1", "score_1"]
    # score(): tensors at the run's bin centres give the same logits
    names, w = run.vocab(world["ego4d"])
    cfg = run.config
    bank = load_bank(Cache.open(world["ego4d"]), "val", cfg.views(), cfg.label, len(names),
                     run.device, cfg.frames)
    from xmic.train.data import batch
    import torch
    f, x, _ = batch(bank, torch.arange(len(bank)), cfg.model.classified_view,
                    list(cfg.model.conditioning_views), cfg.frames, None, train=False)
    feats = {cfg.model.classified_view: f}
    for i, v in enumerate(cfg.model.conditioning_views):
        feats[v] = x[:, :, i]
    logits = run.score(feats, w)                                                # [S, C]
    assert tuple(logits.shape) == (len(bank), len(names))
    assert np.allclose(logits.max(1).values.numpy(), pred["score_1"], atol=1e-5)
    from xmic.config import XmicError
    with pytest.raises(XmicError, match=r"features must be \[B, 16, D\]"):
        run.score({k: v[:, :3] for k, v in feats.items()}, w)


def test_evaluate_writes_the_same_rows(grid, world, tmp_path):  # noqa: F811
    plan = json.loads((grid / "grid.json").read_text())
    r = next(r for r in plan["runs"] if r["method"] == "zeroshot" and r["source"] == "epic")
    run_xmic("evaluate", grid / r["dir"], "--cache", world["ego4d"], "--split", "val",
             "--out", tmp_path / "e")
    one = pd.read_parquet(tmp_path / "e" / "results.parquet")
    df = xmic.results(grid)
    mine = df[(df["run"] == r["id"]) & (df["target_dataset"] == "ego4d")]
    key = ["metric", "criterion"]
    a = one.sort_values(key)[key + ["value", "seed", "overrides", "source_split"]].reset_index(drop=True)
    b = mine.sort_values(key)[key + ["value", "seed", "overrides", "source_split"]].reset_index(drop=True)
    b["seed"] = b["seed"].astype("Int64")
    a["seed"] = a["seed"].astype("Int64")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_the_readmes_python_example_runs(grid, world):  # noqa: F811
    """The README's notebook example, verbatim but for the reader's paths."""
    import contextlib
    import re as re_
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Results for papers and notebooks")[1]
    code = re_.search(r"```python\n(.*?)```", section, re_.S).group(1)
    code = code.replace('"grids/main', f'"{grid}').replace('"caches/ego4d"', f'"{world["ego4d"]}"')
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    assert "xmic" in out.getvalue() and "mean" in out.getvalue()
    assert list(scope["pred"].columns[:3]) == ["segment_id", "label", "class_1"]
    assert len(scope["names"]) == scope["w"].shape[0]


def test_display_names_come_from_the_recipe_or_the_method_record(tmp_path):
    from xmic.grid.recipe import load_recipe
    from xmic.grid.table import display_names
    g = {"recipe": {"display_names": {"zeroshot": "CLIP (zero-shot)"}},
         "runs": [{"method": "xmic-alpha-4", "config": {"method": "xmic"}},
                  {"method": "zeroshot", "config": {"method": "zeroshot"}},
                  {"method": "coop", "config": {"method": "coop"}}]}
    assert display_names(g) == {"xmic-alpha-4": "X-MIC (alpha-4)", "zeroshot": "CLIP (zero-shot)",
                                "coop": "CoOp"}
    y = tmp_path / "r.yaml"
    y.write_text("caches: {epic: c}\nsources: {epic: train}\ntargets: {epic: validation}\n"
                 "labels: [noun]\nmethods: {xmic: {}}\ndisplay_names: {xmic: 'X-MIC (ours)'}\n")
    r = load_recipe(str(y))
    assert r.display_names == {"xmic": "X-MIC (ours)"}
    assert r.as_dict()["display_names"] == {"xmic": "X-MIC (ours)"}

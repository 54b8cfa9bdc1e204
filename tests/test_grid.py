"""Experiment grids on a small generated world (EPIC-like and Ego4D-like caches with shared and
novel classes): plan -> run -> table; re-running redoes nothing; a SIGKILL mid-grid then run
again gives the table of an uninterrupted grid; a failing run is recorded and the others finish;
bad recipes are refused in one line at plan; the built-in recipes plan against caches that hold
what they need and refuse clearly when they do not."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from helpers import run_xmic
from train_data import make_train_cache
from xmic.cache import Cache


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("gridworld")
    epic = make_train_cache(base / "epic", n=24, classes=4, dim=32, videos=6,
                            splits=("train", "validation"), mode="constant", noise=0.5)
    ego = make_train_cache(base / "ego4d", n=20, classes=4, dim=32, videos=5, seed=1,
                           splits=("train", "val"), mode="constant", noise=0.5, dataset="ego4d",
                           class_names=["class2", "class3", "door", "phone"])
    return {"epic": epic.root, "ego4d": ego.root, "base": base}


def recipe(tmp_path, world, **changes) -> Path:
    r = {"caches": {"epic": str(world["epic"]), "ego4d": str(world["ego4d"])},
         "sources": {"epic": "train"}, "targets": {"epic": "validation", "ego4d": "val"},
         "labels": ["noun"], "methods": {"xmic": {}, "zeroshot": {}}, "seeds": [0, 1],
         "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "heldout_fraction": 0.2}}
    r.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))  # in the order written, as a user would
    return path


def files_with_mtimes(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_yaml_grid_plan_run_table_and_rerun(tmp_path, world):
    g = tmp_path / "g"
    cp = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world))
    assert "4 runs, 8 evaluations" in cp.stdout, cp.stdout
    assert run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world)).returncode == 0
    other = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, seeds=[5]), check=False)
    assert other.returncode == 2 and "holds another grid" in other.stderr
    cp = run_xmic("grid", "run", g)
    assert "4 done, 0 running, 0 failed, 0 pending" in cp.stdout, cp.stdout
    import re
    saved = int(re.search(r"(\d+) load\(s\) saved", cp.stdout).group(1))
    assert saved >= 4  # seed 1 of each method reuses seed 0's banks
    st = json.loads(run_xmic("grid", "status", g, "--json").stdout)
    assert st["summary"]["done"] == 4 and st["summary"]["eta_s"] == 0
    assert {s["state"] for s in st["runs"].values()} == {"done"}
    table = run_xmic("grid", "table", g).stdout
    # the paper's layout, methods in the recipe's order (xmic, then zeroshot)
    assert "| method | EPIC→EPIC | EPIC→Ego4D | HM EPIC+Ego4D |" in table, table
    assert table.index("| xmic | ") < table.index("| zeroshot | ") and "±" in table
    assert "novel" in run_xmic("grid", "table", g, "--metric", "novel").stdout
    assert (g / "table.md").exists() and (g / "table.png").read_bytes()[:4] == b"\x89PNG"
    before = files_with_mtimes(g / "runs")
    cp = run_xmic("grid", "run", g)  # finished runs are never redone
    assert files_with_mtimes(g / "runs") == before
    assert "4 done" in cp.stdout


def test_killed_grid_resumes_to_the_uninterrupted_table(tmp_path, world):
    rec = recipe(tmp_path, world, methods={"xmic": {}}, train={
        "epochs": 6, "batch_size": 4, "device": "cpu", "heldout_fraction": 0.2})
    clean, g = tmp_path / "clean", tmp_path / "g"
    for d in (clean, g):
        run_xmic("grid", "plan", d, "--recipe", rec)
    run_xmic("grid", "run", clean)
    import torch
    slow = dict(os.environ, XMIC_TEST_STEP_DELAY="0.05",  # ~0.3 s an epoch: a known pace
                PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "slow_encode"),
                                            os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "xmic.cli", "grid", "run", str(g)], env=slow,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = g / "runs" / "epic-noun-xmic-seed1" / "last.pt"

    def epoch() -> int:
        try:
            return torch.load(second, weights_only=True)["epoch"]
        except Exception:  # not written yet, or being replaced
            return 0
    deadline = time.time() + 120
    while not 1 <= epoch() < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)  # kill inside the second run, after an epoch checkpoint
    assert proc.poll() is None, "the grid finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = epoch()
    assert 1 <= epoch_at_kill < 6
    st = json.loads(run_xmic("grid", "status", g, "--json").stdout)["summary"]
    assert st["done"] == 1 and st["running"] == 0 and st["pending"] == 1  # its claim is dead
    run_xmic("grid", "run", g)
    for rid in ("epic-noun-xmic-seed0", "epic-noun-xmic-seed1"):
        a = torch.load(clean / "runs" / rid / "last.pt", weights_only=True)
        b = torch.load(g / "runs" / rid / "last.pt", weights_only=True)
        assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert run_xmic("grid", "table", g).stdout.split("(table:")[0] == \
        run_xmic("grid", "table", clean).stdout.split("(table:")[0]


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, world):
    import shutil
    bad = tmp_path / "epic-nan"
    shutil.copytree(world["epic"], bad)
    c = Cache.open(bad)
    for shard in c.committed("full_frame"):  # only X-MIC reads full frames
        if shard.startswith("train"):
            z = zarr.open_array(str(bad / "views" / "full_frame" / shard / "data.zarr"), mode="r+")
            z[0, 0] = np.nan
    g = tmp_path / "g"
    rec = recipe(tmp_path, world, seeds=[0])
    data = yaml.safe_load(rec.read_text())
    data["caches"]["epic"] = str(bad)
    rec.write_text(yaml.safe_dump(data))
    run_xmic("grid", "plan", g, "--recipe", rec)
    cp = run_xmic("grid", "run", g, check=False)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "FAILED epic-noun-xmic-seed0" in cp.stdout and "NaN or Inf" in cp.stdout
    st = json.loads(run_xmic("grid", "status", g, "--json").stdout)
    assert st["runs"]["epic-noun-zeroshot-seed0"]["state"] == "done"
    assert st["runs"]["epic-noun-xmic-seed0"]["state"] == "failed"
    assert "2 planned score(s) missing" in run_xmic("grid", "table", g).stdout


@pytest.mark.parametrize("change, words", [
    ({"models": {}}, "unknown key(s) ['models']"),
    ({"methods": {"coop2": {}}}, "method 'coop2' is not one of"),
    ({"methods": {"xmic": {"model.nope": 1}}}, "unknown"),
    ({"targets": {"egtea": "test"}}, "have no cache; give --cache egtea=DIR"),
    ({"methods": {"xmic": {"model.conditioning_views": ["dino"]}}}, "reads view 'dino'"),
    ({"labels": ["object"]}, "labels must be a non-empty list of noun / verb"),
    ({"sources": {"epic": "test"}}, "has no split 'test'"),
    ({"methods": {"../../escape": {"method": "xmic"}}}, "invalid method name '../../escape'"),
])
def test_bad_recipes_are_refused_at_plan(tmp_path, world, change, words):
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", recipe(tmp_path, world, **change),
                  check=False)
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1 and not (tmp_path / "g" / "grid.json").exists()


def test_built_in_recipes(tmp_path, world):
    caches = ["--cache", f"epic={world['epic']}", "--cache", f"ego4d={world['ego4d']}"]
    cp = run_xmic("grid", "plan", tmp_path / "main", "--recipe", "paper-main", *caches,
                  "--seeds", "0", "--set", "epochs=1")
    # 2 sources x 2 labels x 4 methods; each scored on 2 targets, the probe only on its own
    assert "16 runs, 28 evaluations" in cp.stdout, cp.stdout
    g = json.loads((tmp_path / "main" / "grid.json").read_text())
    assert {r["method"] for r in g["runs"]} == {"zeroshot", "linear", "clip-adapter", "xmic"}
    assert all(r["config"]["epochs"] == 1 for r in g["runs"])
    cp = run_xmic("grid", "plan", tmp_path / "egtea", "--recipe", "paper-egtea", *caches,
                  check=False)
    assert cp.returncode == 2 and "--cache egtea=DIR" in cp.stderr
    cp = run_xmic("grid", "plan", tmp_path / "abl", "--recipe", "paper-ablations", *caches)
    # 1 source x 2 labels x 8 variants x 3 seeds: no Encoder II row, the cache has no such views
    assert "48 runs, 96 evaluations" in cp.stdout and "xmic-hands-only" in cp.stdout, cp.stdout
    g = json.loads((tmp_path / "abl" / "grid.json").read_text())
    assert {r["config"]["model"]["xmic"]["alpha"] for r in g["runs"]} == {0.5, 1.0, 2.0, 4.0}
    assert {tuple(r["config"]["model"]["conditioning_views"]) for r in g["runs"]} == {
        ("hand_crop", "full_frame"), ("hand_crop",), ("full_frame",)}
    dino = make_train_cache(tmp_path / "dino", n=12, splits=("train", "validation"),
                            views=("hand_crop", "full_frame", "dino_full", "dino_hand"),
                            view_dims={"dino_full": 48, "dino_hand": 48})
    dino_ego = make_train_cache(tmp_path / "dino-ego", n=12, splits=("val",), dataset="ego4d",
                                views=("hand_crop", "full_frame", "dino_full", "dino_hand"),
                                view_dims={"dino_full": 48, "dino_hand": 48})
    run_xmic("grid", "plan", tmp_path / "abl2", "--recipe", "paper-ablations", "--cache",
             f"epic={dino.root}", "--cache", f"ego4d={dino_ego.root}", "--seeds", "0")
    g = json.loads((tmp_path / "abl2" / "grid.json").read_text())
    enc2 = [r for r in g["runs"] if r["method"] == "xmic-encoder2"]
    assert len(enc2) == 2 and enc2[0]["config"]["model"]["conditioning_views"] == [
        "dino_full", "dino_hand"]
    views_only = make_train_cache(tmp_path / "frames-only", n=12, views=("full_frame",),
                                  splits=("train", "validation"))
    cp = run_xmic("grid", "plan", tmp_path / "x", "--recipe", "paper-main", "--cache",
                  f"epic={views_only.root}", "--cache", f"ego4d={world['ego4d']}", check=False)
    assert cp.returncode == 2 and "reads view 'hand_crop'" in cp.stderr


def test_local_executor_runs_in_parallel_workers(tmp_path, world):
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, seeds=[0]))
    cp = run_xmic("grid", "run", g, "--executor", "local", "--parallel", "2", "--wait")
    assert "2 done" in cp.stdout, cp.stdout
    rec = [json.loads(x) for x in (g / "slurm" / "submissions.jsonl").read_text().splitlines()]
    assert rec[-1]["executor"] == "local" and len(rec[-1]["tasks"]) == 2
    assert os.path.exists(g / "runs" / "epic-noun-xmic-seed0" / "finished.json")


def test_a_grid_grows_in_place_with_extend(tmp_path, world):
    """--extend adds seeds, a method and a target: planned runs and their files are untouched
    (a new target of a trained run is only scored), a changed override is refused, the
    recipe's order is kept."""
    g = tmp_path / "g"
    one = {"epic": "validation"}
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, methods={"xmic": {}},
                                                   seeds=[0], targets=one))
    run_xmic("grid", "run", g)
    before = files_with_mtimes(g / "runs" / "epic-noun-xmic-seed0")
    grown = recipe(tmp_path, world, methods={"zeroshot": {}, "xmic": {}}, seeds=[0, 1],
                   targets={"epic": "validation", "ego4d": "val"})
    refused = run_xmic("grid", "plan", g, "--recipe", grown, check=False)
    assert refused.returncode == 2 and "--extend" in refused.stderr
    cp = run_xmic("grid", "plan", g, "--recipe", grown, "--extend")
    assert "3 new run(s), 1 new target(s) of planned runs" in cp.stdout, cp.stdout
    assert "4 runs, 8 evaluations" in cp.stdout
    cp = run_xmic("grid", "run", g)
    assert "4 done, 0 running, 0 failed, 0 pending" in cp.stdout, cp.stdout
    after = files_with_mtimes(g / "runs" / "epic-noun-xmic-seed0")
    kept = {k: v for k, v in before.items() if not k.endswith("finished.json")}
    assert {k: v for k, v in after.items() if k in kept} == kept  # trained once, kept
    assert any("ego4d-val" in k for k in after)  # the new target scored
    table = run_xmic("grid", "table", g).stdout
    assert table.index("| zeroshot |") < table.index("| xmic |")  # the grown recipe's order
    changed = recipe(tmp_path, world, methods={"xmic": {"model.alpha": 1.0}}, seeds=[0])
    cp = run_xmic("grid", "plan", g, "--recipe", changed, "--extend", check=False)
    assert cp.returncode == 2 and "run epic-noun-xmic-seed0 was planned with another " \
                                  "training config (changed: model)" in cp.stderr, cp.stderr
    other_split = recipe(tmp_path, world, methods={"xmic": {}}, seeds=[0],
                         targets={"epic": "train"})  # EPIC→EPIC would mix two splits
    cp = run_xmic("grid", "plan", g, "--recipe", other_split, "--extend", check=False)
    assert cp.returncode == 2 and "target 'epic' was planned on split 'validation', the recipe " \
                                  "now names 'train'" in cp.stderr, cp.stderr


def test_stacked_seeds_give_the_grid_of_runs_one_by_one(tmp_path, world):
    """``grid run --stack-seeds`` trains X-MIC's seeds as one stacked model and then scores
    every run as usual: the same table and selected epochs as the grid run one by one, the
    weights within 1e-5 (the attention key bias aside, tests/test_stacked.py says why)."""
    from test_stacked import differs
    from xmic.train.checkpoint import load_checkpoint
    rec = recipe(tmp_path, world, methods={"xmic": {}}, seeds=[0, 1])
    for name in ("one", "stacked"):
        run_xmic("grid", "plan", tmp_path / name, "--recipe", rec)
    run_xmic("grid", "run", tmp_path / "one")
    cp = run_xmic("grid", "run", tmp_path / "stacked", "--stack-seeds")
    assert "trained together as one stacked model" in cp.stdout
    assert "2 done, 0 running, 0 failed, 0 pending" in cp.stdout, cp.stdout
    for run in (tmp_path / "one" / "runs").iterdir():
        if "xmic" not in run.name:
            continue
        other = tmp_path / "stacked" / "runs" / run.name
        assert "stacked model" in (other / "train.log").read_text()
        a, b = (load_checkpoint(d / "checkpoint.pt") for d in (run, other))
        assert a["epoch"] == b["epoch"]
        assert max(differs(b["model"][k], a["model"][k], k) for k in a["model"]) < 1e-5
    for n in ("one", "stacked"):
        run_xmic("grid", "table", tmp_path / n, "--format", "csv")
    tables = [(tmp_path / n / "table.csv").read_text() for n in ("one", "stacked")]
    assert tables[0] == tables[1] and "xmic" in tables[0]
    refused = run_xmic("grid", "run", tmp_path / "one", "--stack-seeds", "--executor", "local",
                       check=False)
    assert refused.returncode == 2 and "--executor inprocess" in refused.stderr


def test_a_grid_process_holds_a_bounded_number_of_banks(tmp_path, monkeypatch):
    """The bank memo keeps the most recently used banks only (one source's and its run's
    targets'), never every cache it opened: entries held are counted, not timed."""
    from xmic.grid import runner
    caches = [make_train_cache(tmp_path / f"c{i}", n=12) for i in range(4)]
    memo = runner.bank_memo([{"targets": [{}, {}]}])  # a run scored on two targets
    assert memo.keep == 3
    for c in caches:
        memo(c, "train", ["hand_crop"], "noun", 4, "cpu")
    assert len(memo) == 3 and memo.hits == 0
    memo(caches[-1], "train", ["hand_crop"], "noun", 4, "cpu")  # the most recent is kept
    assert memo.hits == 1 and len(memo) == 3
    memo(caches[0], "train", ["hand_crop"], "noun", 4, "cpu")   # the oldest was let go
    assert memo.hits == 1 and len(memo) == 3


def test_the_eta_costs_each_run_at_its_own_methods_price(tmp_path):
    """Two methods of very different cost: each run left is priced at its method's finished
    runs (or its epochs measured so far), not at the mean of all finished runs."""
    from xmic.grid.state import format_status, grid_status
    runs = []
    for method, done, left in (("xmic", [5.0, 5.0], 2), ("cocoop", [180.0], 2), ("coop", [], 1),
                               ("clip-adapter", [], 1), ("linear", [3.0, 5.0], 0)):
        for i in range(len(done) + left):
            rid = f"{method}-{i}"
            runs.append({"id": rid, "dir": f"runs/{rid}", "method": method, "targets": [],
                         "config": {"epochs": 3}})
            d = tmp_path / "runs" / rid
            d.mkdir(parents=True)
            if i < len(done):
                (d / "finished.json").write_text(json.dumps({"seconds": done[i]}))
    # coop has no finished run, but one epoch of an interrupted run was measured
    (tmp_path / "runs" / "coop-0" / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "seconds": 20.0}) + "\n")
    report, s = grid_status(tmp_path, {"runs": runs})
    m = s["methods"]
    assert m["xmic"] == {"done": 2, "left": 2, "failed": 0, "seconds_per_run": 5.0,
                         "estimate": "finished runs"}
    assert m["cocoop"]["seconds_per_run"] == 180.0 and m["coop"]["seconds_per_run"] == 60.0
    assert m["coop"]["estimate"] == "1 epoch(s) measured"
    assert m["clip-adapter"]["seconds_per_run"] is None
    assert s["eta_s"] == 2 * 5 + 2 * 180 + 60  # the mean of finished runs would say 380
    assert s["eta_unknown_methods"] == ["clip-adapter"]
    text = format_status(tmp_path, report, s)
    assert "about 7m10s left and runs of clip-adapter (not measured yet)" in text, text
    assert "  cocoop: 1 done, 2 left, 3m00s a run (finished runs)" in text, text
    assert "  coop: 0 done, 1 left, 1m00s a run (1 epoch(s) measured)" in text, text
    assert "  linear: 2 done, 0 left, 4.0s a run (finished runs)" in text, text  # finished too


def test_a_grid_is_steered_from_the_command_line_and_its_saved_recipe_round_trips(tmp_path,
                                                                                  world):
    """--methods/--drop-methods choose rows, --sweep adds one named row per value to the rows
    that read the key; a planned grid's folder is a recipe that plans the same grid (the same
    grid.json hash); --extend without --recipe starts from the grid's recorded options."""
    r = recipe(tmp_path, world, methods={"xmic": {}, "zeroshot": {}, "linear": {}})
    g1 = tmp_path / "g1"
    run_xmic("grid", "plan", g1, "--recipe", r, "--drop-methods", "linear", "--seeds", "0",
             "--sweep", "model.xmic.alpha=1,4", "--set", "epochs=3")
    plan1 = json.loads((g1 / "grid.json").read_text())
    rows = {x["method"]: x["config"] for x in plan1["runs"]}
    assert set(rows) == {"xmic", "zeroshot", "xmic-alpha-1", "xmic-alpha-4"}
    assert rows["xmic-alpha-4"]["model"]["xmic"]["alpha"] == 4 and rows["xmic"]["epochs"] == 3
    g2 = tmp_path / "g2"
    run_xmic("grid", "plan", g2, "--recipe", g1)  # the saved grid plans the same grid
    assert json.loads((g2 / "grid.json").read_text())["sha256"] == plan1["sha256"]
    out = run_xmic("grid", "plan", g1, "--extend", "--seeds", "0,1").stdout  # only what is new
    assert "4 new run(s)" in out, out
    plan = json.loads((g1 / "grid.json").read_text())
    assert len(plan["runs"]) == 8 and all(x["config"]["epochs"] == 3 for x in plan["runs"])
    run_xmic("grid", "plan", tmp_path / "g3", "--recipe", r, "--methods", "zeroshot")
    assert {x["method"] for x in json.loads((tmp_path / "g3" / "grid.json").read_text())["runs"]} \
        == {"zeroshot"}
    for args, words in ((["--methods", "cocoop"], "not rows of recipe"),
                        (["--sweep", "model.prompt.context=4"], "no row of the recipe reads"),
                        (["--sweep", "seed=1,2"], "defines a row"),
                        (["--sweep", "model.xmic.alpha=[1"], "not plain numbers or names")):
        cp = run_xmic("grid", "plan", tmp_path / "g4", "--recipe", r, *args, check=False)
        assert cp.returncode == 2 and words in cp.stderr, (args, cp.stderr)
    cp = run_xmic("grid", "plan", tmp_path / "g5", check=False)
    assert cp.returncode == 2 and "--recipe is needed" in cp.stderr


def test_an_optional_row_is_planned_only_where_its_vocabulary_exists(tmp_path, world):
    """A recipe row over a vocabulary some cache lacks (a prompt ensemble not extracted) is
    skipped with a note saying which cache and the command that writes it; once every cache has
    it, the row is planned."""
    import shutil

    from xmic.cache.vocab import add_vocab, load_vocab
    caches = {k: tmp_path / k for k in ("epic", "ego4d")}
    for k, p in caches.items():
        shutil.copytree(world[k], p)
    rows = {"zeroshot": {}, "zeroshot-ensemble": {"method": "zeroshot",
                                                  "model.zeroshot_vocab": "{label}.kinetics"}}
    r = recipe(tmp_path, world, caches={k: str(p) for k, p in caches.items()}, methods=rows,
               optional_methods=["zeroshot-ensemble"], seeds=[0])
    cp = run_xmic("grid", "plan", tmp_path / "g1", "--recipe", r)
    assert "1 runs" in cp.stdout and "not planned: epic-noun-zeroshot-ensemble: no vocabulary " \
        "'{label}.kinetics' in the ego4d, epic cache(s)" in cp.stdout, cp.stdout
    assert "--templates kinetics" in cp.stdout
    for p in caches.values():
        c = Cache.open(p)
        v = load_vocab(c, "noun.photo")
        add_vocab(c, "noun.kinetics", v.classes, v.embeddings, v.prompt,
                  {**v.fingerprint, "templates": [v.prompt]}, source=v.source)
    cp = run_xmic("grid", "plan", tmp_path / "g2", "--recipe", r)
    assert "2 runs" in cp.stdout and "not planned" not in cp.stdout, cp.stdout

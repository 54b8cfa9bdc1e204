"""Grids that cannot mix up runs: unique run folders, rows that train what they say, a plan
edited by hand refused, names from the plan checked, one runner per run, a killed worker counted
as a failure, and bounds on what a recipe may expand to."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import run_xmic
from test_grid import recipe, world  # noqa: F401  (the module-scoped generated world)


def plan_error(tmp_path, world, *extra, **changes) -> str:
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", recipe(tmp_path, world, **changes),
                  *extra, check=False)
    assert cp.returncode == 2, cp.stdout + cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1 and not (tmp_path / "g" / "grid.json").exists()
    return cp.stderr


@pytest.mark.parametrize("change, words", [
    ({"seeds": [0, 0]}, "name one seed twice"),
    ({"labels": ["noun", "noun"]}, "name one label twice"),
    ({"labels": [["noun"]]}, "labels must be a non-empty list of noun / verb"),
    ({"seeds": [10**23]}, "seeds must be at most 100 integers in 0..4294967295"),
    ({"seeds": list(range(101))}, "at most 100"),
    ({"class_splits": 5}, "class_splits must be the folder"),
    ({"train": {"method": "zeroshot"}}, "['method'] define a row of the grid"),
    ({"train": {"label": "verb"}}, "['label'] define a row"),
    ({"methods": {"xmic": {"split": "validation"}}}, "['split'] define a row"),
    ({"methods": {"xmic": {"seed": 3}}}, "['seed'] define a row"),
    ({"train": {"model.prompt_context": 1000000000}}, "outside the allowed range [1, 72]"),
    # keys padded with spaces are the keys they spell, before any check
    ({"methods": {"xmic": {" method": "zeroshot"}}}, "named after method xmic but its `method:` trains zeroshot"),
    ({"methods": {"xmic": {"split ": "validation"}}}, "['split'] define a row"),
    ({"train": {" label ": "verb"}}, "['label'] define a row"),
    ({"train": {"model . alpha": 1.0, "model.alpha": 2.0}}, "'model.alpha' is given twice"),
    # a vocabulary that is not the row's label
    ({"train": {"model.text_vocab": "verb"}, "labels": ["noun"]}, "names vocabulary 'verb', not one of label 'noun'"),
])
def test_recipes_that_would_mix_up_rows_are_refused(tmp_path, world, change, words):
    assert words in plan_error(tmp_path, world, **change)


def test_overrides_on_the_command_line_and_seed_lists(tmp_path, world):
    for sets in (["--set", "method=zeroshot"], ["--set", "label=verb"], ["--set", "seed=4"],
                 ["--set", " method =zeroshot"], ["--set", "split =validation"]):
        assert "define a row of the grid" in plan_error(tmp_path, world, *sets)
    assert "expected integers" in plan_error(tmp_path, world, "--seeds", "1,,x")


def test_colliding_run_folders_are_refused(tmp_path, world):
    # source "epic" + method "noun-xmic" and source "epic-noun" + method "xmic": one folder name
    caches = {"epic": str(world["epic"]), "epic-noun": str(world["epic"])}
    err = plan_error(tmp_path, world, caches=caches, sources={"epic": "train", "epic-noun": "train"},
                     labels=["noun"], methods={"noun-xmic": {"method": "xmic"}, "xmic": {}},
                     targets={"epic": "validation"})
    assert "would share the run folder 'epic-noun-noun-xmic-seed0'" in err


def test_nested_aliases_cannot_blow_up_a_plan(tmp_path, world):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, "
              f"*a{i-1}, *a{i-1}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(["methods: {xmic: {}}", "labels: [noun]", "class_splits: *a8"])
                    .replace("methods", "\n".join(lines) + "\nmethods", 1))
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", bomb, check=False)
    assert cp.returncode == 2 and "expands to more than 100000 values" in cp.stderr


def test_a_plan_edited_by_hand_or_naming_paths_is_refused(tmp_path, world):
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, seeds=[0],
                                                    methods={"zeroshot": {}}))
    plan = json.loads((g / "grid.json").read_text())
    plan["runs"][0]["targets"][0]["dataset"] = str(tmp_path / "outside")
    (g / "grid.json").write_text(json.dumps(plan))
    cp = run_xmic("grid", "run", g, check=False)
    assert cp.returncode == 2 and "does not match its recorded sha256" in cp.stderr
    assert not (tmp_path / "outside-validation").exists()
    # rehashed by the attacker: the names are still checked before they become folders
    import hashlib
    body = {k: plan[k] for k in ("recipe", "runs", "skipped") if k in plan}
    plan["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (g / "grid.json").write_text(json.dumps(plan))
    cp = run_xmic("grid", "run", g, check=False)
    assert cp.returncode == 2 and "invalid dataset name" in cp.stderr
    assert not list(tmp_path.glob("outside*"))
    (g / "grid.json").write_text("{not json")
    cp = run_xmic("grid", "status", g, check=False)
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1


def test_a_cache_manifest_naming_a_path_is_refused(tmp_path, world):
    import shutil
    bad = tmp_path / "cache"
    shutil.copytree(world["epic"], bad)
    meta = json.loads((bad / "cache.json").read_text())
    meta["dataset"] = str(tmp_path / "elsewhere")
    (bad / "cache.json").write_text(json.dumps(meta))
    cp = run_xmic("cache", "info", bad, check=False)
    assert cp.returncode == 2 and "invalid dataset name" in cp.stderr and "corrupt or hostile" in cp.stderr


def test_grid_plan_and_train_refuse_a_cache_folder(tmp_path, world):
    cp = run_xmic("grid", "plan", world["epic"], "--recipe", recipe(tmp_path, world), check=False)
    assert cp.returncode == 2 and "is a cache" in cp.stderr
    cp = run_xmic("train", "--cache", world["epic"], "--out", world["ego4d"], "--method",
                  "zeroshot", "--device", "cpu", check=False)
    assert cp.returncode == 2 and "is a cache folder" in cp.stderr


def test_one_runner_per_run(tmp_path, world):
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, seeds=[0, 1],
                                                    methods={"zeroshot": {}}))
    held = g / "runs" / "epic-noun-zeroshot-seed0"
    held.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live runner (another process of this host) holds seed 0
        (held / "running.json").write_text(json.dumps({"host": os.uname().nodename,
                                                       "pid": sleeper.pid, "started": 0}))
        cp = run_xmic("grid", "run", g)
        assert "running elsewhere" in cp.stdout and "1 done, 1 running" in cp.stdout, cp.stdout
        assert not (held / "last.pt").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # a claim whose pid runs again (reused after a reboot) but whose heartbeat is 30 days old
    (held / "running.json").write_text(json.dumps({"host": os.uname().nodename,
                                                   "pid": os.getpid(), "started": 0}))
    os.utime(held / "running.json", (time.time() - 30 * 86400, time.time() - 30 * 86400))
    cp = run_xmic("grid", "run", g)  # its runner is gone: the claim is taken over
    assert "2 done" in cp.stdout and (held / "finished.json").exists(), cp.stdout
    assert not (held / "running.json").exists()


def test_a_killed_local_worker_is_a_failure(tmp_path, world):
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, seeds=[0], methods={
        "xmic": {}}, train={"epochs": 40, "batch_size": 4, "device": "cpu"}))
    slow = dict(os.environ, XMIC_TEST_STEP_DELAY="0.05",
                PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "slow_encode"),
                                            os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "xmic.cli", "grid", "run", str(g),
                             "--executor", "local", "--wait"], env=slow,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    claim = g / "runs" / "epic-noun-xmic-seed0" / "running.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            pid = json.loads(claim.read_text())["pid"]
            break
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    else:
        pytest.fail("the worker never claimed its run")
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "FAILED epic-noun-xmic-seed0" in out and "ended without finishing it" in out
    assert "killed or died without a result" in out, out
    st = json.loads(run_xmic("grid", "status", g, "--json").stdout)
    assert st["runs"]["epic-noun-xmic-seed0"]["state"] == "failed"
    assert "killed or died without a result" in st["runs"]["epic-noun-xmic-seed0"]["error"]


def tiny_grid(tmp_path, run: bool = True) -> Path:
    """A planned (and run) one-run zero-shot grid on two small caches of its own."""
    from train_data import make_train_cache
    epic = make_train_cache(tmp_path / "epic", n=12, splits=("train", "validation"))
    r = {"caches": {"epic": str(epic.root)}, "sources": {"epic": "train"},
         "targets": {"epic": "validation"}, "labels": ["noun"], "methods": {"zeroshot": {}},
         "seeds": [0], "train": {"device": "cpu", "heldout_fraction": 0.0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", tmp_path / "r.yaml")
    if run:
        run_xmic("grid", "run", g)
    return g


def test_extend_cannot_add_a_row_into_a_planned_rows_folder(tmp_path, world):
    caches = {"epic": str(world["epic"]), "epic-noun": str(world["epic"])}
    g = tmp_path / "g"
    run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world, caches=caches,
                                                   sources={"epic": "train"}, labels=["noun"],
                                                   methods={"noun-xmic": {"method": "xmic"}},
                                                   targets={"epic": "validation"}))
    grown = recipe(tmp_path, world, caches=caches, sources={"epic-noun": "train"},
                   labels=["noun"], methods={"xmic": {}}, targets={"epic": "validation"})
    cp = run_xmic("grid", "plan", g, "--recipe", grown, "--extend", check=False)
    assert cp.returncode == 2 and "would share the run folder 'epic-noun-noun-xmic-seed0'" in cp.stderr, cp.stderr


def test_a_runner_whose_claim_was_taken_over_leaves_the_new_one_alone(tmp_path):
    """A runner paused past the staleness limit (another host took its run over) must neither
    refresh nor delete the new runner's claim when it wakes up."""
    from xmic.files.claims import Claim as RunClaim
    path = tmp_path / "running.json"
    first = RunClaim.take(path, tmp_path)
    os.utime(path, (time.time() - 3600, time.time() - 3600))  # it looks dead: taken over
    second = RunClaim.take(path, tmp_path)
    assert second is not None and json.loads(path.read_text())["token"] == second.token
    first.release()  # the first one wakes up and finishes
    assert path.exists() and json.loads(path.read_text())["token"] == second.token
    second.release()
    assert not path.exists()


def test_the_paper_recipes_name_their_rows(monkeypatch):
    """A method added to the method table does not silently join the paper's tables: the
    recipes module, imported with an experimental method registered, plans the same rows."""
    import importlib
    from xmic.grid import recipe as recipes
    from xmic.train import methods
    monkeypatch.setitem(methods.METHODS, "experimental", methods.METHODS["xmic"])
    fresh = importlib.reload(recipes)
    try:
        assert "experimental" not in fresh.BUILT_IN["paper-main"]["methods"]
        rows = tuple(fresh.BUILT_IN["paper-egtea"]["methods"])
        assert tuple(r for r in rows if r not in fresh.ENSEMBLE_ROWS) == fresh.PAPER_ROWS
        assert set(fresh.PAPER_ROWS) <= set(methods.METHODS)
    finally:
        monkeypatch.undo()
        importlib.reload(recipes)


def test_ctrl_c_says_how_to_resume_and_the_table_alone_goes_to_stdout(tmp_path, monkeypatch):
    """Ctrl-C in `grid run` exits 130 with one line saying what is kept and the command that
    continues; `grid table > file` captures the table only (where it was written goes to
    stderr); `grid run` reports progress with the time left."""
    from xmic.grid import runner
    g = tiny_grid(tmp_path, run=False)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "run_one", interrupted)
    r = run_xmic("grid", "run", g, check=False)
    assert r.returncode == 130, r.stderr
    assert f"run `xmic grid run {g}` again to continue" in r.stderr and "Aborted" not in r.stderr
    monkeypatch.undo()
    out = run_xmic("grid", "run", g).stdout
    assert "grid: 1 of 1 runs done" in out, out
    t = run_xmic("grid", "table", g)
    assert "(table:" not in t.stdout and "(table:" in t.stderr
    assert t.stdout == (g / "table.md").read_text()


def test_plan_prints_the_expected_cost_of_what_it_adds(tmp_path):
    """--extend on a grid with finished runs: plan prices the runs it adds at their method's
    measured cost."""
    g = tiny_grid(tmp_path)
    out = run_xmic("grid", "plan", g, "--extend", "--seeds", "0,1").stdout
    assert "expected cost of the runs left: about" in out and "zeroshot" in out, out


def test_plan_prices_runs_at_another_grids_measured_epochs(tmp_path):
    """--costs-from: a method's cost per epoch per training segment, measured on a grid run
    before, priced for this grid's epochs and source size; status and plan say where it came
    from, and a method that grid never ran is named as unmeasured."""
    import statistics

    from train_data import make_train_cache
    from xmic.grid.state import epoch_seconds, format_status, grid_status
    from xmic.grid.plan import load_grid
    small = make_train_cache(tmp_path / "small", n=12, splits=("train", "validation"))
    big = make_train_cache(tmp_path / "big", n=36, seed=1, splits=("train", "validation"))

    def plan(name, cache, epochs, methods, *extra):
        r = {"caches": {"epic": str(cache.root)}, "sources": {"epic": "train"},
             "targets": {"epic": "validation"}, "labels": ["noun"],
             "methods": {m: {} for m in methods}, "seeds": [0],
             "train": {"device": "cpu", "heldout_fraction": 0.0, "epochs": epochs}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(r))
        return run_xmic("grid", "plan", tmp_path / name, "--recipe", tmp_path / f"{name}.yaml",
                        *extra)

    plan("before", small, 2, ["linear"])
    run_xmic("grid", "run", tmp_path / "before")
    measured = epoch_seconds(tmp_path / "before" / "runs" / "epic-noun-linear-seed0")
    assert len(measured) == 2
    out = plan("now", big, 5, ["linear", "clip-adapter"], "--costs-from",
               tmp_path / "before").stdout
    took = json.loads((tmp_path / "before" / "runs" / "epic-noun-linear-seed0" /
                       "finished.json").read_text())["seconds"]
    expected = round(statistics.mean(s / 12 for s in measured) * 36 * 5
                     + max(0.0, took - sum(measured)), 1)  # epochs, plus loading and scoring
    assert f"{tmp_path / 'before'} measured no epoch of: clip-adapter" in out, out
    assert "expected cost of the runs left: about" in out and "(measured in " in out, out
    g = tmp_path / "now"
    report, s = grid_status(g, load_grid(g))
    m = s["methods"]
    assert m["linear"]["seconds_per_run"] == expected
    assert m["linear"]["estimate"] == f"measured in {tmp_path / 'before'}"
    assert m["clip-adapter"]["seconds_per_run"] is None
    assert "clip-adapter (not measured yet)" in format_status(g, report, s)


def test_plan_probes_each_methods_cost_on_a_sample_of_its_segments(tmp_path):
    """--probe: one epoch of each method's first run on a few segments, in a folder removed
    afterwards, prices every run of the method by its epochs and source size."""
    from train_data import make_train_cache
    from xmic.grid.layout import BORROWED_COSTS
    from xmic.grid.plan import load_grid
    from xmic.grid.state import grid_status
    cache = make_train_cache(tmp_path / "c", n=36, splits=("train", "validation"))
    r = {"caches": {"epic": str(cache.root)}, "sources": {"epic": "train"},
         "targets": {"epic": "validation"}, "labels": ["noun"],
         "methods": {"zeroshot": {}, "linear": {}}, "seeds": [0, 1],
         "train": {"device": "cpu", "heldout_fraction": 0.0, "epochs": 5}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    g = tmp_path / "g"
    out = run_xmic("grid", "plan", g, "--recipe", tmp_path / "r.yaml", "--probe",
                   "--probe-segments", "8").stdout
    assert "probe of linear: 1 epoch on 8 segments" in out, out
    assert "probe of zeroshot: " in out, out
    assert "a run (measured in a probe)" in out, out
    record = json.loads((g / BORROWED_COSTS).read_text())
    lin = record["methods"]["linear"]
    assert lin["epochs_measured"] == 1 and lin["seconds_per_epoch_per_segment"] > 0
    assert lin["seconds_per_run"] == round(lin["seconds_per_epoch_per_segment"] * 36 * 5
                                           + lin["seconds_beside_epochs"], 1)
    assert record["methods"]["zeroshot"]["seconds_per_run"] > 0 and not record["unmeasured"]
    assert not list(g.glob(".probe-*")) and not any((g / "runs").glob("*/*"))  # nothing kept
    _, s = grid_status(g, load_grid(g))
    assert s["methods"]["linear"]["seconds_per_run"] == lin["seconds_per_run"]
    cp = run_xmic("grid", "plan", tmp_path / "g2", "--recipe", tmp_path / "r.yaml", "--probe",
                  "--costs-from", g, check=False)
    assert cp.returncode == 2 and "--probe or --costs-from, not both" in cp.stderr


def test_grid_table_ci_through_the_command_line(tmp_path):
    """`grid table --ci` on a finished grid: intervals in every scored cell, the note saying
    how they were made, the CSV's interval columns; the same seed gives the same table."""
    g = tiny_grid(tmp_path)
    a = run_xmic("grid", "table", g, "--ci", "--ci-samples", "200").stdout
    assert "zeroshot" in a and " [" in a and "paired bootstrap" in a, a
    assert a == run_xmic("grid", "table", g, "--ci", "--ci-samples", "200").stdout
    c = run_xmic("grid", "table", g, "--ci", "--ci-samples", "200", "--format", "csv").stdout
    assert "ci_low" in c.splitlines()[0] and "significant_best" in c.splitlines()[0]
    cp = run_xmic("grid", "table", g, "--ci", "--ci-samples", "10", check=False)
    assert cp.returncode == 2 and "at least 100" in cp.stderr

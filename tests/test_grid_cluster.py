"""`xmic grid run --executor slurm` on the real one-node cluster (marked `slurm`): 6 runs as
arrays of at most 4 (so two arrays), one task requeued (`scontrol requeue`) in the middle of its
training resumes from its last epoch and ends with the weights of an uninterrupted run; status
and table are right afterwards."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from helpers import run_xmic
from slurm_world import require_cluster, wait_until
from test_slurm_cluster import release_requeued, sacct
from train_data import make_train_cache

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("cluster")]  # one worker, in turn
SLOW = Path(__file__).parent / "slow_encode"


def test_grid_as_slurm_arrays_with_a_requeue(tmp_path):
    require_cluster()
    epic = make_train_cache(tmp_path / "epic", n=24, splits=("train", "validation"),
                            mode="constant", noise=0.5)
    ego = make_train_cache(tmp_path / "ego4d", n=16, splits=("val",), dataset="ego4d", seed=1,
                           mode="constant", noise=0.5, class_names=["class2", "class3", "door", "phone"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "caches": {"epic": str(epic.root), "ego4d": str(ego.root)}, "sources": {"epic": "train"},
        "targets": {"epic": "validation", "ego4d": "val"}, "labels": ["noun"],
        "methods": {"xmic": {}}, "seeds": [0, 1, 2, 3, 4, 5],
        "train": {"epochs": 6, "batch_size": 8, "device": "cpu", "heldout_fraction": 0.2}}))
    ref, g = tmp_path / "ref", tmp_path / "g"
    for d in (ref, g):
        run_xmic("grid", "plan", d, "--recipe", recipe)
    run_xmic("grid", "run", ref)
    slow = dict(os.environ, XMIC_TEST_STEP_DELAY="0.4",  # ~1.2 s an epoch, at a known pace
                PYTHONPATH=os.pathsep.join([str(SLOW), os.environ.get("PYTHONPATH", "")]))
    run_xmic("grid", "run", g, "--executor", "slurm", "--slurm-set", "max_array_size=4",
             "--slurm-set", "cpus_per_task=1", "--slurm-set", "mem_gb=2",
             "--slurm-set", "gpus_per_task=0", "--slurm-set", "timeout_min=15", env=slow)
    rec = json.loads((g / "slurm" / "submissions.jsonl").read_text().splitlines()[-1])
    assert [a["tasks"] for a in rec["arrays"]] == [4, 2]
    task = rec["tasks"][0]
    run_dir = g / "runs" / task["runs"][0]

    def mid_training() -> bool:
        try:
            return 1 <= torch.load(run_dir / "last.pt", weights_only=True)["epoch"] < 5
        except Exception:  # not written yet, or being replaced
            return False
    wait_until(mid_training, 240, "the first task in the middle of its training", poll=0.2)
    subprocess.run(["scontrol", "requeue", task["job_id"]], check=True)
    release_requeued(task["job_id"])

    def finished() -> bool:
        st = json.loads(run_xmic("grid", "status", g, "--json").stdout)["summary"]
        return st["done"] + st["failed"] == 6
    wait_until(finished, 300, "every run of the grid", poll=1.0)
    st = json.loads(run_xmic("grid", "status", g, "--json").stdout)
    assert st["summary"]["done"] == 6, st
    assert any(s.endswith("REQUEUED") for s in sacct(task["job_id"])), sacct(task["job_id"])
    log = (g / "slurm" / "logs" / f"{task['job_id']}_0_log.out").read_text()
    assert f"run {run_dir.name}: resuming after epoch" in log, log[-3000:]
    for r in rec["tasks"]:
        for rid in r["runs"]:
            a = torch.load(ref / "runs" / rid / "last.pt", weights_only=True)
            b = torch.load(g / "runs" / rid / "last.pt", weights_only=True)
            assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), rid
            assert [x["train_loss"] for x in a["history"]] == [x["train_loss"] for x in b["history"]]
    assert run_xmic("grid", "table", g).stdout.split("(table:")[0] == \
        run_xmic("grid", "table", ref).stdout.split("(table:")[0]

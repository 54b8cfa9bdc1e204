"""`xmic slurm` on the real one-node cluster of scripts/slurm-local.sh (marked `slurm`; skipped
with the reason when the cluster is not up, failed instead when XMIC_REQUIRE_SLURM=1)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from helpers import assert_same_features, run_xmic
from slurm_world import (EXTRACT, ON_SLURM, committed, make_world, plan_world, require_cluster,
                         wait_until)
from xmic.cache import Cache
from xmic.cache.verify import verify

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("cluster")]  # one worker, in turn
VIEWS = ["full_frame", "hand_crop"]
SLOW = Path(__file__).parent / "slow_encode"


@pytest.fixture(scope="module")
def cluster():
    return require_cluster()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), videos=6, segs_per_video=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, world):
    """The same extraction in-process (debug executor), shards of 4 segments."""
    ref = tmp_path_factory.mktemp("ref") / "c"
    plan_world(ref, world, 4)
    run_xmic("slurm", "submit", ref, "--executor", "debug", *EXTRACT)
    return ref


def sacct(job: str) -> list[str]:
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-j", job, "-o", "JobID,State"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def squeue_state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip()


def job_steps(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-s", "-j", job], capture_output=True,
                          text=True).stdout.strip()


def test_array_equals_in_process_run_and_splits(cluster, tmp_path, world, reference):
    cache = tmp_path / "c"
    plan_world(cache, world, 4)  # 24 segments -> 6 shards
    cp = run_xmic("slurm", "submit", cache, *ON_SLURM, *EXTRACT, "--max-array-size", "4",
                  "--dry-run")
    assert "6 shard(s) in 6 task(s), 2 array(s) of at most 4" in cp.stdout
    assert "#SBATCH --array=0-3" in cp.stdout and "#SBATCH --cpus-per-task=1" in cp.stdout
    assert "#SBATCH --mem=2GB" in cp.stdout and not (cache / "slurm" / "submissions.jsonl").exists()
    bad = run_xmic("slurm", "submit", cache, *ON_SLURM, *EXTRACT, "--partition", "nosuch",
                   check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "sbatch refused the job array: sbatch: error:" in bad.stderr and "--partition" in bad.stderr
    assert "Traceback" not in bad.stderr and not (cache / "slurm" / "submissions.jsonl").exists()
    cp = run_xmic("slurm", "submit", cache, *ON_SLURM, *EXTRACT, "--max-array-size", "4", "--wait")
    assert "done 6  running 0  failed 0  pending 0" in cp.stdout, cp.stdout + cp.stderr
    rec = json.loads((cache / "slurm" / "submissions.jsonl").read_text().splitlines()[-1])
    assert [a["tasks"] for a in rec["arrays"]] == [4, 2]
    tasks = [t["job_id"] for t in rec["tasks"]]
    assert tasks[:4] == [f"{rec['arrays'][0]['job_id']}_{i}" for i in range(4)]
    for a in rec["arrays"]:  # the result is written just before the task ends
        wait_until(lambda: all(s.endswith("|COMPLETED") for s in sacct(a["job_id"])), 60,
                   f"array {a['job_id']} COMPLETED in sacct", poll=0.5)
    assert verify(Cache.open(cache), deep=True) == []
    assert_same_features(cache, reference)  # byte for byte
    assert "scheduler: 6 COMPLETED" in run_xmic("slurm", "status", cache).stdout
    # the default MaxArraySize comes from the cluster itself
    cp = run_xmic("slurm", "retry", cache, "--dry-run")
    assert "nothing to retry" in cp.stdout


def requeue_moments(seed: int, shards: int = 6, count: int = 3) -> list[tuple[int, float]]:
    """(commits to wait for, extra seconds) of each preemption: random but distinct moments."""
    import random
    rng = random.Random(seed)
    return [(k, round(rng.uniform(0.0, 1.5), 2)) for k in sorted(rng.sample(range(1, shards), count))]


@pytest.mark.faults
def test_preempted_three_times_redoes_at_most_one_shard_each(cluster, tmp_path, world, reference):
    """One task owns all 6 shards and is preempted 3 times at seeded random moments, by
    `scontrol requeue` (SIGTERM; Slurm requeues it) and by USR2 (submitit's checkpoint; the task
    requeues itself). Each run skips committed shards: attempt logs show at most one shard redone
    per preemption; the cache verifies and equals the in-process run byte for byte."""
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    slow = dict(os.environ, XMIC_TEST_ENCODE_DELAY="1.0",  # ~2 s a shard, at a known pace
                PYTHONPATH=os.pathsep.join([str(SLOW), os.environ.get("PYTHONPATH", "")]))
    run_xmic("slurm", "submit", cache, *ON_SLURM, *EXTRACT, "--shards-per-task", "6", env=slow)
    rec = json.loads((cache / "slurm" / "submissions.jsonl").read_text().splitlines()[-1])
    job = rec["tasks"][0]["job_id"]
    moments = requeue_moments(seed=8)
    hows = ["scontrol-requeue", "usr2", "scontrol-requeue"]
    for (after, extra), how in zip(moments, hows):
        wait_until(lambda: committed(cache) >= after, 240, f"commit {after}")
        time.sleep(extra)
        assert committed(cache) < 6, "the task finished before it could be preempted"
        if how == "scontrol-requeue":
            subprocess.run(["scontrol", "requeue", job], check=True)
        else:
            subprocess.run(["scancel", "--signal=USR2", job], check=True)
        release_requeued(job)
    wait_until(lambda: committed(cache) == 6, 240, "all shards after the requeues", poll=0.5)
    js = json.loads(run_xmic("slurm", "status", cache, "--json").stdout)
    assert js["summary"]["done"] == 6
    attempts = {s: r["attempts"] for s, r in js["shards"].items()}
    assert sum(a > 1 for a in attempts.values()) <= 3 and max(attempts.values()) <= 2, attempts
    log = (cache / "slurm" / "logs" / f"{job}_0_log.out").read_text()
    assert log.count("SIGTERM: committed shards are kept") >= 2, log[-3000:]
    assert "checkpoint: requeueing" in log, log[-3000:]
    wait_until(lambda: any(s.endswith("COMPLETED") for s in sacct(job)), 60, "COMPLETED in sacct")
    assert sum(s.endswith("REQUEUED") for s in sacct(job)) == 3, sacct(job)
    assert verify(Cache.open(cache), deep=True) == []
    assert_same_features(cache, reference)


def release_requeued(job: str) -> None:
    """Slurm holds a requeued job two minutes before it is eligible again. Once its old run is
    gone (no step left, and a few seconds for slurmd to forget it: 3 s passed every run here,
    1 s too) make it eligible now."""
    wait_until(lambda: squeue_state(job) == "PENDING" and not job_steps(job), 60,
               "the requeued task pending, its old step gone", poll=0.2)
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def test_corrupt_input_shows_failed_and_retry_completes(cluster, tmp_path, world, reference):
    import shutil
    media = tmp_path / "media"
    shutil.copytree(world["root"], media)
    bad = media / "P01" / "rgb_frames" / "P01_04" / "frame_0000000080.jpg"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    cache = tmp_path / "c"
    plan_world(cache, dict(world, root=media), 4)
    cp = run_xmic("slurm", "submit", cache, *ON_SLURM, *EXTRACT, "--wait", check=False)
    assert cp.returncode == 1
    cp = run_xmic("slurm", "status", cache)
    assert "done 5  running 0  failed 1  pending 0" in cp.stdout, cp.stdout
    assert "FAILED train-00003: 1 failed segment(s); segment P01_04_2:" in cp.stdout, cp.stdout
    assert "frame_0000000080.jpg" in cp.stdout
    bad.write_bytes(good)
    cp = run_xmic("slurm", "retry", cache, "--wait")
    assert "done 6  running 0  failed 0  pending 0" in cp.stdout, cp.stdout
    rec = json.loads((cache / "slurm" / "submissions.jsonl").read_text().splitlines()[-1])
    assert rec["kind"] == "retry" and [t["shards"] for t in rec["tasks"]] == [["train-00003"]]
    assert verify(Cache.open(cache), deep=True) == []
    assert_same_features(cache, reference)


def test_demo_on_the_cluster(cluster, tmp_path):
    cp = run_xmic("demo", "--out", tmp_path / "d", "--executor", "slurm", "--epochs", "2",
                  "--device", "cpu", "--slurm-set", "mem_gb=1")
    assert "extracting epic as slurm jobs" in cp.stdout and "verify --deep: both caches ok" in cp.stdout
    rec = json.loads((tmp_path / "d" / "caches" / "epic" / "slurm" / "submissions.jsonl")
                     .read_text().splitlines()[-1])
    assert rec["executor"] == "slurm"
    wait_until(lambda: all(s.endswith("|COMPLETED") for s in sacct(rec["arrays"][0]["job_id"])),
               60, "the demo's array COMPLETED in sacct", poll=0.5)
    assert (tmp_path / "d" / "report.md").exists()

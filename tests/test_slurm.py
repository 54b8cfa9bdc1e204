"""`xmic slurm`: grouping, submission records, status from the cache, failure and retry, with
the in-process (debug) and subprocess (local) executors; no cluster needed. The tests on the
real local Slurm cluster live in test_slurm_cluster.py."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import assert_same_features, run_xmic
from slurm_world import EXTRACT, make_world, plan_world
from xmic.cache import Cache
from xmic.cache.claims import live_claims, shard_claim
from xmic.cache.verify import verify
from xmic.slurm.status import _busy_seconds, status
from xmic.slurm.launch import split_arrays
from xmic.slurm.submit import group_shards


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def test_grouping_and_array_split():
    shards = [f"train-{i:05d}" for i in range(10)]
    assert group_shards(shards, 3) == [shards[0:3], shards[3:6], shards[6:9], shards[9:]]
    # local executor: at most max_tasks processes, each with more shards
    assert [len(g) for g in group_shards(shards, 1, max_tasks=4)] == [3, 3, 3, 1]
    arrays = split_arrays(group_shards(shards, 1), 4)
    assert [len(a) for a in arrays] == [4, 4, 2]
    assert sum(arrays, []) == [[s] for s in shards]
    assert _busy_seconds([(0, 10), (5, 12), (20, 25)]) == 17  # idle 12..20 is not counted


def test_debug_submit_status_and_nothing_left(tmp_path, world):
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    cp = run_xmic("slurm", "submit", cache, "--executor", "debug", *EXTRACT, "--dry-run")
    assert "3 shard(s) in 3 task(s), 1 array(s)" in cp.stdout
    assert not (cache / "slurm" / "submissions.jsonl").exists()  # a dry run submits nothing
    cp = run_xmic("slurm", "submit", cache, "--executor", "debug", *EXTRACT, "--wait")
    assert "done 3  running 0  failed 0  pending 0" in cp.stdout, cp.stdout
    rec = json.loads((cache / "slurm" / "submissions.jsonl").read_text().splitlines()[-1])
    assert rec["executor"] == "debug" and rec["shards"] == 3 and len(rec["tasks"]) == 3
    assert rec["extract"]["sampling"] == "all" and rec["slurm"]["executor"] == "debug"
    assert verify(Cache.open(cache), deep=True) == []
    cp = run_xmic("slurm", "submit", cache, "--executor", "debug", *EXTRACT)
    assert "nothing to submit: 3 shard(s) done" in cp.stdout
    js = json.loads(run_xmic("slurm", "status", cache, "--json").stdout)
    assert js["summary"]["done"] == 3 and js["summary"]["frames_per_s"] > 0
    assert js["summary"]["eta_s"] == 0
    assert all(r["attempts"] == 1 for r in js["shards"].values())
    # the commit log is an accelerator only: lost or broken lines fall back to the markers
    log = cache / "views" / "hand_crop" / ".progress.jsonl"
    assert len(log.read_text().splitlines()) == 3
    log.write_text(log.read_text().splitlines()[0][:20] + "\n")
    js2 = json.loads(run_xmic("slurm", "status", cache, "--json").stdout)
    assert js2["shards"] == js["shards"]


def test_corrupt_input_fails_then_retry_on_local_executor(tmp_path, world):
    """A zero-byte frame fails its segment: the shard shows as failed with the file named;
    after the fix, `retry` redoes that shard alone (the old one kept aside) and completes."""
    import shutil
    media = tmp_path / "media"
    shutil.copytree(world["root"], media)
    bad = media / "P01" / "rgb_frames" / "P01_02" / "frame_0000000050.jpg"
    good = bad.read_bytes()
    bad.write_bytes(b"")
    w = dict(world, root=media)
    cache = tmp_path / "c"
    plan_world(cache, w, 4)
    cp = run_xmic("slurm", "submit", cache, "--executor", "local", *EXTRACT, "--wait", check=False)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    cp = run_xmic("slurm", "status", cache)
    assert "done 2  running 0  failed 1  pending 0" in cp.stdout, cp.stdout
    assert "FAILED train-00001: 1 failed segment(s); segment P01_02_1:" in cp.stdout
    assert "frame_0000000050.jpg" in cp.stdout and "xmic slurm retry" in cp.stdout
    assert "nothing to submit" in run_xmic("slurm", "submit", cache, "--executor", "local",
                                           *EXTRACT).stdout  # submit leaves failures to retry
    bad.write_bytes(good)
    cp = run_xmic("slurm", "retry", cache, "--wait")  # settings of the last submission
    assert "1 shard(s) in 1 task(s)" in cp.stdout and "done 3  running 0  failed 0" in cp.stdout
    assert list((cache / "views" / "full_frame" / ".superseded").glob("train-00001.*"))
    c = Cache.open(cache)
    assert verify(c, deep=True) == []
    assert c.index()["status"].to_pylist().count("ok") == 12
    js = json.loads(run_xmic("slurm", "status", cache, "--json").stdout)
    assert js["shards"]["train-00001"]["attempts"] == 2 and js["shards"]["train-00000"]["attempts"] == 1
    subs = [json.loads(x) for x in (cache / "slurm" / "submissions.jsonl").read_text().splitlines()]
    assert [s["kind"] for s in subs] == ["submit", "retry"] and subs[1]["superseded"] == ["train-00001"]


def test_shard_that_raises_is_marked_failed_others_go_on(tmp_path, world, monkeypatch):
    from xmic.config import from_dict
    from xmic.extract import pipeline
    from xmic.extract.config import ExtractConfig
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    real = pipeline.encode_packed
    calls = {"n": 0}

    def flaky(enc, tensors, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # one call per view and shard: the second shard raises
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(enc, tensors, batch, **kw)
    monkeypatch.setattr(pipeline, "encode_packed", flaky)
    cfg = from_dict(ExtractConfig, {"model": str(EXTRACT[1]), "weights": "random", "workers": 0,
                                    "device": "cpu", "batch_size": 1000, "sampling": "all"})
    s = pipeline.run_shards(cache, cfg, echo=lambda *a: None)
    assert s["shards_done"] == 2 and s["shards_failed"] == 1
    _, report, summary, _ = status(cache)
    assert summary["failed"] == 1 and summary["done"] == 2
    assert "illegal memory access" in report["train-00001"]["error"]
    assert live_claims(cache, "full_frame") == {}  # the failed writer let go of its claim


def test_running_claims(tmp_path, world):
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    c = Cache.open(cache)
    claim = shard_claim(c.root, "full_frame", "train-00002")
    assert c.shard_state("full_frame", "train-00002") == "running"
    _, report, summary, _ = status(cache)
    assert summary["running"] == 1 and report["train-00002"]["host"] == socket.gethostname()
    claim.release()
    # a claim of a dead pid on this host, and one from another host with an old heartbeat
    run = cache / "views" / "full_frame" / ".running"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname().replace(".", "_")
    (run / f"train-00000.{host}.{dead}.aaaa").write_text("{}")
    old = run / "train-00001.node042.1234.bbbb"
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = run / "train-00002.node043.99.cccc"
    fresh.write_text(json.dumps({"job": "77_3", "host": "node043"}))
    # this host, a pid that runs (ours: a reused pid after a reboot) but a 30-day-old heartbeat
    reused = run / f"train-00000.{host}.{os.getpid()}.dddd"
    reused.write_text("{}")
    os.utime(reused, (time.time() - 30 * 86400, time.time() - 30 * 86400))
    assert set(live_claims(c.root, "full_frame")) == {"train-00002"}
    from xmic.cache.claims import reap_dead_claims
    assert reap_dead_claims(c.root, "full_frame") == 2 and not reused.exists()
    assert c.shard_states("full_frame") == {"train-00000": "pending", "train-00001": "pending",
                                            "train-00002": "running"}


def test_two_workers_on_the_same_shards(tmp_path, world):
    """A requeued task and a retried one on the same shards at once: one commit per shard."""
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    clean = tmp_path / "clean"
    plan_world(clean, world, 4)
    run_xmic("slurm", "submit", clean, "--executor", "debug", *EXTRACT)
    code = ("import sys; from xmic.slurm.worker import ShardTask; "
            "ShardTask(sys.argv[1], {'model': sys.argv[2], 'weights': 'random', 'workers': 0, "
            "'device': 'cpu', 'batch_size': 64, 'sampling': 'all'})"
            "(['train-00000', 'train-00001', 'train-00002'])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(cache), str(EXTRACT[1])],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert verify(Cache.open(cache), deep=True) == []
    assert_same_features(cache, clean)
    assert not list((cache / "views" / "full_frame" / ".tmp").iterdir())


def test_retry_needs_an_earlier_submission(tmp_path, world):
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    cp = run_xmic("slurm", "retry", cache, check=False)
    assert cp.returncode == 2 and "no earlier submission and no committed shard" in cp.stderr
    cp = run_xmic("slurm", "submit", cache, "--executor", "debug", check=False)
    assert cp.returncode == 2 and "give --weights FILE, local-dir:DIR, a pretrained tag" in cp.stderr
    cp = run_xmic("slurm", "submit", cache, *EXTRACT, "--slurm-set", "cpus_per_task=0", check=False)
    assert cp.returncode == 2 and "cpus_per_task must be >= 1" in cp.stderr
    cp = run_xmic("slurm", "submit", cache, *EXTRACT, "--slurm-set", "nodes=3", check=False)
    assert cp.returncode == 2 and "unknown key 'nodes'" in cp.stderr


def test_work_first_run_locally_whose_shard_all_failed_is_redone(tmp_path, world):
    """A video missing after planning fails all 4 segments of its shard: that shard is failed
    in `cache info`, `slurm status` and `extract run` alike (never done); a plain re-run keeps
    it and says how to redo it; after the fix `slurm retry` (no earlier submission: the
    settings the shards recorded) and `extract run --redo-failed` both redo it alone."""
    import shutil
    media = tmp_path / "media"
    shutil.copytree(world["root"], media)
    for how in ("retry", "redo-failed"):
        cache = tmp_path / how
        plan_world(cache, dict(world, root=media), 4)
        frames = media / "P01" / "rgb_frames" / "P01_02"
        frames.rename(tmp_path / "away")
        cp = run_xmic("extract", "run", cache, *EXTRACT, check=False)
        assert cp.returncode == 1 and "4 segment(s) failed" in cp.stdout, cp.stdout
        assert "2 shard(s) extracted, 0 already done, 1 failed (1 committed with failed " \
               "segments)" in cp.stdout, cp.stdout
        info = run_xmic("cache", "info", cache).stdout
        assert "shards done 2 / pending 0 / failed 1" in info, info
        status = run_xmic("slurm", "status", cache).stdout
        assert "done 2  running 0  failed 1  pending 0" in status, status
        cp = run_xmic("extract", "run", cache, *EXTRACT, check=False)
        assert cp.returncode == 1 and "0 shard(s) extracted, 2 already done" in cp.stdout
        assert "1 shard(s) committed earlier hold failed segments" in cp.stdout
        assert f"xmic extract run {cache} --redo-failed" in cp.stdout
        # redone before the fix: the inputs are still missing, so nothing is superseded
        cp = (run_xmic("extract", "run", cache, *EXTRACT, "--redo-failed", check=False)
              if how == "redo-failed" else run_xmic("slurm", "retry", cache, "--dry-run"))
        said = cp.stdout + cp.stderr
        assert "kept 1 shard(s): their failed segments' inputs are still missing: train-00001 (P01_02" in said
        assert not list((cache / "views" / "hand_crop" / ".superseded").glob("train-00001.*"))
        (tmp_path / "away").rename(frames)
        if how == "retry":
            cp = run_xmic("slurm", "retry", cache, "--dry-run")
            assert "no earlier submission: retrying with the extraction settings" in cp.stdout
            assert "will redo: train-00001" in cp.stdout and "1 shard(s) with failed" in cp.stdout
            cp = run_xmic("slurm", "retry", cache, "--executor", "debug", "--wait")
            assert "done 3  running 0  failed 0  pending 0" in cp.stdout, cp.stdout
        else:
            cp = run_xmic("extract", "run", cache, *EXTRACT, "--redo-failed")
            assert "redone: 1 shard(s) that held failed segments (train-00001)" in cp.stdout
            assert "1 shard(s) extracted, 2 already done, 0 failed" in cp.stdout, cp.stdout
        c = Cache.open(cache)
        assert verify(c, deep=True) == [] and c.index()["status"].to_pylist().count("ok") == 12
        assert list((cache / "views" / "hand_crop" / ".superseded").glob("train-00001.*"))
        assert "shards done 3 / pending 0 / failed 0" in run_xmic("cache", "info", cache).stdout
    assert_same_features(tmp_path / "retry", tmp_path / "redo-failed")


def test_demo_extracts_with_the_local_executor(tmp_path):
    cp = run_xmic("demo", "--out", tmp_path / "d", "--executor", "local", "--epochs", "2",
                  "--device", "cpu")
    assert "extracting epic as local jobs" in cp.stdout and "verify --deep: both caches ok" in cp.stdout
    for name in ("epic", "ego4d"):
        rec = json.loads((tmp_path / "d" / "caches" / name / "slurm" / "submissions.jsonl")
                         .read_text().splitlines()[-1])
        assert rec["executor"] == "local" and rec["tasks"]
    assert (tmp_path / "d" / "report.md").exists()


def test_scheduler_lines_without_a_cluster(monkeypatch):
    """sbatch's refusal in one line naming the option; without squeue/sacct the status says the
    states are the files' only."""
    from submitit.core.utils import FailedJobError
    from xmic.slurm import scheduler
    err = FailedJobError("Job (task=0) failed during processing with trace:\n---\nsubprocess "
                         "failed\n\nsbatch: error: Invalid account or account/partition "
                         "combination specified\n")
    refused = scheduler.sbatch_refusal(err)
    msg = str(refused.spelled(lambda k: "--" + k.replace("_", "-")))  # `xmic slurm submit`
    assert msg.startswith("sbatch refused the job array: sbatch: error: Invalid account")
    assert "--account" in msg and "--partition" in msg and "\n" not in msg
    grid = str(refused.spelled(lambda k: f"--slurm-set {k}=..."))  # `xmic grid run`
    assert "change --slurm-set partition=... or --slurm-set account=..." in grid
    assert "the Slurm setting account" in str(refused)  # no command: the setting's name
    monkeypatch.setattr(scheduler, "_run", lambda cmd: None)
    assert "no squeue/sacct here" in scheduler.queue_summary(["12_0"])
    monkeypatch.setattr(scheduler, "_run", lambda cmd: "12_0|PENDING|Priority\n12_1|RUNNING|None\n"
                        if cmd[0] == "squeue" else "12_2|COMPLETED\n")
    line = scheduler.queue_summary(["12_0", "12_1", "12_2", "12_3"])
    assert line == ("scheduler: 1 COMPLETED, 1 PENDING (Priority), 1 RUNNING, "
                    "1 unknown to the scheduler"), line


def test_the_gpu_request_follows_the_device(tmp_path, world, monkeypatch):
    """`--device cpu` asks Slurm for no GPU (extraction and grids alike); a gpus_per_task the
    user names still wins."""
    from xmic.slurm import submit as submitting
    seen = []
    monkeypatch.setattr(submitting, "submit",
                        lambda cache, ext, slu, **k: seen.append(slu.gpus_per_task) or ({}, []))
    cache = tmp_path / "c"
    plan_world(cache, world, 4)
    for device, extra, want in (("cpu", [], 0), ("cuda", [], 1), ("cpu", ["--gpus-per-task", "1"], 1)):
        run_xmic("slurm", "submit", cache, "--executor", "slurm", "--device", device, *extra)
        assert seen[-1] == want, (device, extra)
    from test_grid_trust import tiny_grid
    from xmic.grid import runner
    monkeypatch.setattr(runner, "submit_grid",
                        lambda g, slu, *a, **k: seen.append(slu.gpus_per_task) or {})
    g = tiny_grid(tmp_path / "grid", run=False)  # its runs train on the CPU
    run_xmic("grid", "run", g, "--executor", "slurm")
    assert seen[-1] == 0
    run_xmic("grid", "run", g, "--executor", "slurm", "--slurm-set", "gpus_per_task=2")
    assert seen[-1] == 2

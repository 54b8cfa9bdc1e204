"""Crash consistency: 20 seeded trials that SIGKILL a real `xmic` process at a random moment
and resume it: extraction (8), `cache import` (6) and training (6). After every resume the cache
verifies with --deep and equals a clean run byte for byte; a resumed training run ends with the
same weights and history as an uninterrupted one. Every trial is a real kill: a process that ends
before its kill moment is not counted, and the trial is drawn again with an earlier moment.
Marked `faults`."""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import assert_same_features, run_xmic
from extract_data import TINY, make_epic
from train_data import make_train_cache
from xmic.cache import Cache
from xmic_inputs import make_xmic_inputs
from xmic.cache.verify import verify
from xmic.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults
TRIES = 4  # draws of the kill moment before a trial gives up on catching the process running


def xmic_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "xmic.cli", *map(str, args)]


def run(cmd: list[str], in_process: bool = True) -> float:
    """Run to completion: in this process (plans and resumes), or as the killed runs are (the
    clean run that measures the span the kill moments are drawn from)."""
    t = time.time()
    if in_process:
        run_xmic(*cmd[3:])
    else:
        cp = subprocess.run(cmd, capture_output=True, text=True)
        assert cp.returncode == 0, f"{' '.join(cmd)}:\n{cp.stdout}\n{cp.stderr}"
    return time.time() - t


def kill_once(cmd: list[str], delay: float) -> bool:
    """Start ``cmd`` and SIGKILL it after ``delay`` seconds; True if it was still running then
    (a real fault), False if it had already finished (not a fault)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive and proc.returncode == -signal.SIGKILL


def killed_at_random(make_cmd, fresh, rng: random.Random, span: float) -> None:
    """Kill ``make_cmd()`` at a random moment of its ``span``; when it finished first, ``fresh()``
    resets its output and the moment is drawn again, earlier. Fails if no try caught it."""
    hi = 0.85
    for _ in range(TRIES):
        fresh()
        if kill_once(make_cmd(), rng.uniform(0.15, hi) * span):
            return
        hi /= 2
    pytest.fail(f"{TRIES} tries never caught `{' '.join(map(str, make_cmd()))}` running")


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    return make_epic(tmp_path_factory.mktemp("epic"), videos=("P01_01", "P01_02", "P01_03"))


def extract_args(cache: Path) -> list[str]:
    return xmic_cmd("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
                    "--device", "cpu", "--batch-size", "8", "--set", "sampling=all")


def plan_args(cache: Path, epic: dict) -> list[str]:
    return xmic_cmd("extract", "plan", cache, "--dataset", "epic", "--annotations", epic["annotations"],
                    "--root", epic["root"], "--boxes", epic["boxes"], "--shard-size", "1")


def test_extraction_killed_8_times(tmp_path, epic):
    clean = tmp_path / "clean"
    run(plan_args(clean, epic))
    span = run(extract_args(clean), in_process=False)
    for seed in range(8):
        rng = random.Random(seed)
        cache = tmp_path / f"t{seed}"

        def fresh():
            shutil.rmtree(cache, ignore_errors=True)
            run(plan_args(cache, epic))
        killed_at_random(lambda: extract_args(cache), fresh, rng, span)
        c = Cache.open(cache)
        assert verify(c, deep=True, partial=True) == [], f"seed {seed}: after the kill"
        run(extract_args(cache))
        assert verify(Cache.open(cache), deep=True) == [], f"seed {seed}"
        assert_same_features(cache, clean)


def test_import_killed_6_times(tmp_path):
    inputs = make_xmic_inputs(tmp_path / "in", "epic", ("train",), segments_per_split=120, dim=256)
    sf = inputs["splits"]["train"]

    def args(cache):
        return xmic_cmd("cache", "import", cache, "--dataset", "epic", "--split", "train",
                        "--annotations", sf["annotations"], "--view", f"full_frame={sf['full_frame']}",
                        "--view", f"hand_crop={sf['hand_crop']}", "--set", "shard_segments=4")
    span = run(args(tmp_path / "clean"), in_process=False)
    for seed in range(6):
        rng = random.Random(100 + seed)
        cache = tmp_path / f"t{seed}"
        killed_at_random(lambda: args(cache), lambda: shutil.rmtree(cache, ignore_errors=True),
                         rng, span)
        if (cache / "cache.json").exists():
            assert verify(Cache.open(cache), deep=True, partial=True) == [], f"seed {seed}"
        run(args(cache))
        assert verify(Cache.open(cache), deep=True) == [], f"seed {seed}"
        assert_same_features(cache, tmp_path / "clean")


def test_training_killed_6_times_then_resumed(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=96)

    def args(out, resume=False):
        return xmic_cmd("train", "--cache", cache.root, "--label", "noun", "--method", "xmic",
                        "--out", out, "--epochs", "8", "--device", "cpu", "--set", "batch_size=8",
                        *(["--resume"] if resume else []))
    span = run(args(tmp_path / "full"), in_process=False)
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    for seed in range(6):
        rng = random.Random(200 + seed)
        out = tmp_path / f"t{seed}"
        killed_at_random(lambda: args(out), lambda: shutil.rmtree(out, ignore_errors=True),
                         rng, span)
        # resume from the last checkpoint; killed before the first one, the run starts over
        run(args(out, resume=(out / "last.pt").exists()))
        got = load_checkpoint(out / "last.pt")
        assert got["epoch"] == full["epoch"] == 8, f"seed {seed}"
        for k in full["model"]:
            assert torch.equal(full["model"][k], got["model"][k]), f"seed {seed}: {k}"
        assert [r["train_loss"] for r in got["history"]] == [r["train_loss"] for r in full["history"]]

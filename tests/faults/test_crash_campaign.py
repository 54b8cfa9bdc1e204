"""Crash consistency: 20 seeded trials that SIGKILL a real `xmic` process at a random moment
and resume it: extraction (8), `cache import` (6) and training (6). After every resume the cache
verifies with --deep and equals a clean run byte for byte; a resumed training run ends with the
same weights and history as an uninterrupted one. Marked `faults`; about 3 minutes on 2 cores."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_same_features
from extract_data import TINY, make_epic
from train_data import make_train_cache
from xmic.cache import Cache
from xmic.cache.synthetic import make_xmic_inputs
from xmic.cache.verify import verify
from xmic.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.faults
REPORT: list[dict] = []


def xmic_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "xmic.cli", *map(str, args)]


def run(cmd: list[str]) -> float:
    t = time.time()
    cp = subprocess.run(cmd, capture_output=True, text=True)
    assert cp.returncode == 0, f"{' '.join(cmd)}:\n{cp.stdout}\n{cp.stderr}"
    return time.time() - t


def killed_at_random(cmd: list[str], rng: random.Random, span: float) -> bool:
    """Start ``cmd``, SIGKILL it after a random part of ``span`` seconds; True if it was still
    running (a real fault), False if it had already finished."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + rng.uniform(0.2, 0.85) * span
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


@pytest.fixture(scope="module")
def report():
    yield REPORT
    if REPORT:
        kinds = sorted({r["kind"] for r in REPORT})
        print("\ncrash campaign: " + "; ".join(
            f"{k}: {sum(r['kind'] == k for r in REPORT)} trials, "
            f"{sum(r['kind'] == k and r['killed'] for r in REPORT)} killed mid-run"
            for k in kinds) + "; lost: nothing")


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    return make_epic(tmp_path_factory.mktemp("epic"), videos=("P01_01", "P01_02", "P01_03"))


def extract_args(cache: Path) -> list[str]:
    return xmic_cmd("extract", "run", cache, "--model", TINY, "--weights", "random", "--workers", "0",
                    "--device", "cpu", "--batch-size", "8", "--set", "sampling=all")


def plan_args(cache: Path, epic: dict) -> list[str]:
    return xmic_cmd("extract", "plan", cache, "--dataset", "epic", "--annotations", epic["annotations"],
                    "--root", epic["root"], "--boxes", epic["boxes"], "--shard-size", "1")


def test_extraction_killed_20_ways(tmp_path, epic, report):
    clean = tmp_path / "clean"
    run(plan_args(clean, epic))
    span = run(extract_args(clean))
    for seed in range(8):
        rng = random.Random(seed)
        cache = tmp_path / f"t{seed}"
        run(plan_args(cache, epic))
        killed = killed_at_random(extract_args(cache), rng, span)
        c = Cache.open(cache)
        assert verify(c, deep=True, partial=True) == [], f"seed {seed}: after the kill"
        run(extract_args(cache))
        assert verify(Cache.open(cache), deep=True) == [], f"seed {seed}"
        assert_same_features(cache, clean)
        report.append({"kind": "extract", "seed": seed, "killed": killed})


def test_import_killed(tmp_path, report):
    inputs = make_xmic_inputs(tmp_path / "in", "epic", ("train",), segments_per_split=120, dim=256)
    sf = inputs["splits"]["train"]

    def args(cache):
        return xmic_cmd("cache", "import", cache, "--dataset", "epic", "--split", "train",
                        "--annotations", sf["annotations"], "--view", f"full_frame={sf['full_frame']}",
                        "--view", f"hand_crop={sf['hand_crop']}", "--set", "shard_segments=4")
    span = run(args(tmp_path / "clean"))
    for seed in range(6):
        rng = random.Random(100 + seed)
        cache = tmp_path / f"t{seed}"
        killed = killed_at_random(args(cache), rng, span)
        if (cache / "cache.json").exists():
            assert verify(Cache.open(cache), deep=True, partial=True) == [], f"seed {seed}"
        run(args(cache))
        assert verify(Cache.open(cache), deep=True) == [], f"seed {seed}"
        assert_same_features(cache, tmp_path / "clean")
        report.append({"kind": "import", "seed": seed, "killed": killed})


def test_training_killed_then_resumed(tmp_path, report):
    cache = make_train_cache(tmp_path / "c", n=96)

    def args(out, resume=False):
        return xmic_cmd("train", "--cache", cache.root, "--label", "noun", "--method", "xmic",
                        "--out", out, "--epochs", "8", "--device", "cpu", "--set", "batch_size=8",
                        *(["--resume"] if resume else []))
    span = run(args(tmp_path / "full"))
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    for seed in range(6):
        rng = random.Random(200 + seed)
        out = tmp_path / f"t{seed}"
        killed = killed_at_random(args(out), rng, span)
        # resume from the last checkpoint; killed before the first one, the run starts over
        run(args(out, resume=(out / "last.pt").exists()))
        got = load_checkpoint(out / "last.pt")
        assert got["epoch"] == full["epoch"] == 8, f"seed {seed}"
        for k in full["model"]:
            assert torch.equal(full["model"][k], got["model"][k]), f"seed {seed}: {k}"
        assert [r["train_loss"] for r in got["history"]] == [r["train_loss"] for r in full["history"]]
        report.append({"kind": "train", "seed": seed, "killed": killed})


def test_report_written(report, tmp_path):
    assert len(report) == 20, json.dumps(report)

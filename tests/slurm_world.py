"""Shared pieces of the Slurm tests: a planned EPIC-layout world and the CLI arguments."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import run_xmic
from extract_data import TINY, make_epic

SLURM_DIR = Path(os.environ.get("XMIC_SLURM_DIR", "/tmp/xmic-slurm"))
# the tiny model on every frame of each segment: about a second per 8-segment shard
EXTRACT = ["--model", TINY, "--weights", "random", "--workers", "0", "--device", "cpu",
           "--batch-size", "64", "--set", "sampling=all"]
ON_SLURM = ["--executor", "slurm", "--cpus-per-task", "1", "--mem-gb", "2", "--gpus-per-task", "0",
            "--timeout-min", "15"]


def cluster_up() -> str | None:
    """None when the local cluster answers, else why not."""
    conf = Path(os.environ.get("SLURM_CONF", SLURM_DIR / "etc" / "slurm.conf"))
    if not conf.exists():
        return f"no Slurm config at {conf} (run: bash scripts/slurm-local.sh up)"
    if shutil.which("scontrol") is None:
        return "scontrol is not installed (run: bash scripts/slurm-local.sh up)"
    os.environ["SLURM_CONF"] = str(conf)
    try:
        subprocess.run(["scontrol", "ping"], check=True, capture_output=True, timeout=10)
    except (subprocess.SubprocessError, OSError):
        return f"slurmctld does not answer for {conf} (run: bash scripts/slurm-local.sh up)"
    return None


def require_cluster() -> Path:
    """Skip (fail under XMIC_REQUIRE_SLURM=1) unless the local cluster answers."""
    why = cluster_up()
    if why:
        if os.environ.get("XMIC_REQUIRE_SLURM") == "1":
            pytest.fail(f"XMIC_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    return SLURM_DIR


def make_world(root: Path, videos: int = 3, segs_per_video: int = 4) -> dict:
    return make_epic(root, videos=tuple(f"P01_{i + 1:02d}" for i in range(videos)),
                     frames=160, segs_per_video=segs_per_video)


def plan_world(cache: Path, world: dict, shard_size: int) -> None:
    run_xmic("extract", "plan", cache, "--dataset", "epic", "--annotations", world["annotations"],
             "--root", world["root"], "--boxes", world["boxes"], "--shard-size", shard_size)


def wait_until(cond, timeout: float, what: str, poll: float = 0.05):
    t = time.time()
    while time.time() - t < timeout:
        got = cond()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def committed(cache: Path, view: str = "hand_crop") -> int:
    d = Path(cache) / "views" / view
    return sum(1 for p in d.glob("*/marker.json")) if d.is_dir() else 0

"""A DataLoader worker's memory is bounded by the videos in flight, not by the videos a run
touches: the same extraction over 10 and over 30 videos (frame tars, EPIC-100 detection pickles
of 3,000 frames each) peaks within a few MB, where keeping every video's detections and member
index would add ~3 MB per video. Peak RSS is read from the processes (their own), in one test."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO


def worker_peak_mb(world, n_videos: int, tmp_path) -> float:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import scale
    finally:
        sys.path.remove(str(REPO / "bench"))
    d = tmp_path / f"w{n_videos}"
    d.mkdir()
    scale.make_world(d, n_videos, 3000, None, run_segments=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    cp = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--stage", "run",
                         "--world", str(d)], capture_output=True, text=True, env=env, check=True)
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out["failed"] == 0 and out["frames"] > 0
    return out["worker_peak_mb"]


def test_a_workers_memory_does_not_grow_with_the_videos_it_reads(tmp_path):
    from xmic.extract.boxes.folder import VIDEOS_KEPT
    from xmic.extract.frame_archive import INDEXES_KEPT
    assert 10 >= max(VIDEOS_KEPT, INDEXES_KEPT)  # the short run already fills both caches
    short = worker_peak_mb(None, 10, tmp_path)
    long = worker_peak_mb(None, 30, tmp_path)
    assert long - short < 25, (short, long)  # unbounded: +60 MB and more for 20 more videos

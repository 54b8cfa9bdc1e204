"""Extraction beside other runs, other limits and other releases: a shard another process
extracts is left to it, a low open-file limit is raised for the workers, and a plan written by an
earlier release still loads."""
from __future__ import annotations

import json

import pytest

from extract_data import TINY
from xmic.cache import Cache, CacheConfig
from xmic.extract.pipeline import run_shards
from xmic.extract.planning import SplitSource, plan
from test_extract import CFG, encoder, epic  # noqa: F401  (the tiny encoder and EPIC world)


def test_a_shard_another_process_extracts_is_left_to_it(tmp_path, epic, encoder):
    """Two runs on one cache: a shard with a live claim of another writer is skipped and said
    so; a shard committed by another process first is not counted as extracted here."""
    from xmic.cache.claims import shard_claim
    from xmic.cache import ShardWriter
    from xmic.extract.commits import CommittedElsewhere, commit_all
    plan(tmp_path / "c", SplitSource("epic", epic["annotations"], epic["root"], "train",
                                     boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=3))
    c = Cache.open(tmp_path / "c")
    claim = shard_claim(c.root, "hand_crop", c.shards()[0])  # alive: this very process
    s = run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)
    claim.release()
    assert s["shards_elsewhere"] == 1 and s["shards_done"] == len(c.shards()) - 1
    done = c.shards()[1]
    w = ShardWriter(c, "full_frame", done, encoder.dim, c.view("full_frame")["fingerprint"])
    for sid in w.segment_ids:
        w.fail(sid, "late")
    with pytest.raises(CommittedElsewhere):
        commit_all([w], {})
    assert c.marker("full_frame", done)["ok"] > 0  # the first commit stands


def test_a_low_open_file_limit_is_raised_for_the_workers(tmp_path, epic):
    """On a node whose `ulimit -n` is low, extraction raises its own soft limit to the hard one
    (workers hand segments over as shared-memory descriptors): a run started under a soft
    limit of 64 with two workers finishes."""
    import resource
    import subprocess
    import sys
    plan(tmp_path / "c", SplitSource("epic", epic["annotations"], epic["root"], "train",
                                     boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=2))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 256:
        pytest.skip(f"this machine's hard open-file limit is {hard}")
    cp = subprocess.run([sys.executable, "-m", "xmic.cli", "extract", "run", str(tmp_path / "c"),
                         "--model", str(TINY), "--weights", "random", "--workers", "2",
                         "--device", "cpu", "--batch-size", "8"], capture_output=True, text=True,
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard)))
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    assert "0 failed" in cp.stdout
    code = ("import resource, torch; from xmic.extract.feeding import open_files_for_workers as f; "
            "print(f(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], "
            "torch.multiprocessing.get_sharing_strategy())")
    for soft_hard in ((64, hard), (64, 128)):  # the hard limit low too: shared by file name
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             preexec_fn=lambda sh=soft_hard: resource.setrlimit(
                                 resource.RLIMIT_NOFILE, sh)).stdout.split()
        want = soft_hard[1] if soft_hard[1] != resource.RLIM_INFINITY else 1 << 16
        assert int(got[0]) == int(got[1]) == want, got
        assert got[2] == ("file_system" if want < 1024 else "file_descriptor"), got


def test_a_plan_written_by_an_earlier_release_still_loads(tmp_path):
    """extract_plan.json keeps its keys: a plan without the later fields loads with their
    defaults, and a typed plan saves the keys earlier releases read."""
    from xmic.extract.plan_record import ExtractPlan
    old = {"splits": {"train": {"dataset": "epic", "annotations": "/a.csv", "root": "/r",
                                "views": ["full_frame", "hand_crop"], "boxes": "/b",
                                "boxes_format": "epic-100", "plan_sha256": "x", "segments": 3,
                                "missing": {}}},
           "classes": {"noun": ["knife"]}}
    (tmp_path / "extract_plan.json").write_text(json.dumps(old))
    p = ExtractPlan.load(tmp_path)
    s = p.splits["train"]
    assert s.box_format == "epic-100" and s.frame_keys is None and s.settings == {}
    assert s.views == ("full_frame", "hand_crop") and p.classes == {"noun": ["knife"]}
    p.save(tmp_path)
    again = json.loads((tmp_path / "extract_plan.json").read_text())["splits"]["train"]
    assert {k: again[k] for k in old["splits"]["train"]} == old["splits"]["train"]
    assert again["boxes_frame_keys"] is None and again["settings"] == {}

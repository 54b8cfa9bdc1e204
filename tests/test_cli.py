"""The CLI surface: help lists the stage groups; the demo runs end to end from a fresh folder."""
from __future__ import annotations

from conftest import run_xmic
from xmic.cache import Cache
from xmic.cache.verify import verify


def test_help_lists_stage_groups():
    out = run_xmic("--help").stdout
    for group in ("cache", "extract", "slurm", "train", "evaluate", "demo"):
        assert f"  {group} " in out
    out = run_xmic("cache", "--help").stdout
    for cmd in ("info", "verify", "convert", "import", "import-text"):
        assert f"  {cmd} " in out


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cp = run_xmic("demo", "--out", out, "--epochs", "3", "--device", "cpu")
    assert "weights are RANDOM" in cp.stdout and "verify --deep: both caches ok" in cp.stdout
    assert "| xmic | epic | 1 |" in cp.stdout and "| zeroshot | epic | 1 |" in cp.stdout
    for name in ("epic", "ego4d"):
        c = Cache.open(out / "caches" / name)
        assert verify(c, deep=True) == [] and set(c.views()) == {"full_frame", "hand_crop"}
    assert (out / "report.md").read_text().startswith("# xmic demo report")
    for method in ("xmic", "zeroshot"):
        for ev in ("epic-validation", "ego4d-val"):
            assert (out / "runs" / method / "eval" / ev / "metrics.json").exists()
    # a second run over the same folder resumes the caches and retrains
    cp = run_xmic("demo", "--out", out, "--epochs", "1", "--device", "cpu")
    assert "0 failed" in cp.stdout and "| xmic | epic | 1 |" in cp.stdout


def test_convert_cli(small_cache, tmp_path):
    cp = run_xmic("cache", "convert", small_cache.root, tmp_path / "h5", "--to", "hdf5")
    assert "verify ok" in cp.stdout
    assert Cache.open(tmp_path / "h5").backend == "hdf5"

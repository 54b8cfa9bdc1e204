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
    cp = run_xmic("demo", "--out", tmp_path / "demo", "--segments", "30")
    assert "verify --deep: ok" in cp.stdout and "identical in both backends" in cp.stdout
    for name in ("epic-cache", "epic-cache-hdf5"):
        c = Cache.open(tmp_path / "demo" / name)
        assert verify(c, deep=True) == []
    # a second run over the same folder resumes: nothing to redo, same result
    cp = run_xmic("demo", "--out", tmp_path / "demo", "--segments", "30")
    assert "verify --deep: ok" in cp.stdout


def test_convert_cli(small_cache, tmp_path):
    cp = run_xmic("cache", "convert", small_cache.root, tmp_path / "h5", "--to", "hdf5")
    assert "verify ok" in cp.stdout
    assert Cache.open(tmp_path / "h5").backend == "hdf5"

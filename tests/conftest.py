"""Fixtures shared by the tests (a small cache, one demo run); helpers live in helpers.py."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub

from helpers import fill_cache, run_xmic  # noqa: E402


@pytest.fixture
def small_cache(tmp_path):
    return fill_cache(tmp_path / "cache")


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory):
    """One `xmic demo` run (3 epochs, CPU) shared by the tests that need its world and caches."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    cp = run_xmic("demo", "--out", out, "--epochs", "3", "--device", "cpu")
    # open_clip's "initialized randomly" line is said once, in xmic's words ("RANDOM")
    assert "No pretrained weights loaded" not in cp.stdout + cp.stderr, cp.stderr
    return out, cp.stdout


# Tests that share an expensive fixture run on one xdist worker, so it is built once, not once per
# worker (`--dist loadgroup`; a test's own xdist_group mark wins).
SHARED_FIXTURE_GROUPS = {"demo_out": "demo-out"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        for fixture, group in SHARED_FIXTURE_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))
                break

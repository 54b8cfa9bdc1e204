"""The test runner keeps `xdist_group` tests on one worker: the cluster tests share one Slurm
node and run in turn, and tests of one expensive fixture build it once (tests/conftest.py). A
pytest and pytest-xdist pair that drops the groups (pytest 9.2 with xdist 3.8) fails here, not
as a slower, flakier suite."""
from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("group-check")
def test_a_grouped_test_carries_its_group_to_the_scheduler(request):
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getoption("loadgroup",
                                                                                 False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@group-check"), (
        f"{request.node.nodeid}: pytest-xdist did not group this test; install a pytest it "
        "supports (setup.cfg's test extra)")


def test_tests_of_a_shared_fixture_are_marked_with_its_group(request):
    from conftest import SHARED_FIXTURE_GROUPS
    for fixture, group in SHARED_FIXTURE_GROUPS.items():
        for item in request.session.items:  # those collected with this test
            if fixture in getattr(item, "fixturenames", ()):
                assert item.get_closest_marker("xdist_group").args[0] in (group, "cluster"), item

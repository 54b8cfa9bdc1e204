"""xmic: X-MIC on a feature cache. Stages: extract, cache, slurm, train, evaluate (docs/architecture.md).

For notebooks: ``xmic.results(GRID)`` is a grid's scores as a pandas DataFrame (one row per run,
target and metric); ``xmic.load_run(RUN)`` a trained run, with ``predict(cache, split)`` and
``score(features)``.
"""
from __future__ import annotations

from xmic.provenance import __version__  # noqa: F401  (the version is written once, there)


def results(grid_dir):
    """A grid's results as a pandas DataFrame (``xmic.grid.results``)."""
    from xmic.grid.results import results as grid_results
    return grid_results(grid_dir)


def load_run(run_dir, device: str = "cpu"):
    """A trained run (``xmic.evaluate.api.Run``)."""
    from xmic.evaluate.api import Run
    return Run(run_dir, device)

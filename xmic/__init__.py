"""xmic: X-MIC on a feature cache. Stages: extract, cache, slurm, train, evaluate (docs/architecture.md).

For notebooks: ``xmic.results(GRID)`` is a grid's scores as a pandas DataFrame (one row per run,
target and metric; ``ci=True``: the bootstrap's intervals per table cell); ``xmic.load_run(RUN)`` a trained run, with ``predict(cache, split)`` and
``score(features)``.
"""
from __future__ import annotations

from xmic.provenance import __version__  # noqa: F401  (the version is written once, there)


def results(grid_dir, ci: bool = False, metric: str = "top1", criterion: str = "exact",
            samples: int = 1000, seed: int = 0):
    """A grid's results as a pandas DataFrame (``xmic.grid.results``); with ``ci`` the summary
    of the paired bootstrap instead: per table cell its mean, 95 % interval and whether it is
    a significant best (``xmic.grid.significance``)."""
    if ci:
        from xmic.grid.significance import significance_frame
        return significance_frame(grid_dir, metric, criterion, samples, seed)
    from xmic.grid.results import results as grid_results
    return grid_results(grid_dir)


def load_run(run_dir, device: str = "cpu"):
    """A trained run (``xmic.evaluate.api.Run``)."""
    from xmic.evaluate.api import Run
    return Run(run_dir, device)

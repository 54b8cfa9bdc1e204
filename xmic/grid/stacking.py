"""``--stack-seeds``: the seeds of one grid row trained together as one stacked model.

Input: a grid folder, its runs, the process's bank memo and ``echo``. ``train_seed_groups``
groups the runs that are still to train from scratch (pending, no ``last.pt``) and differ only
in their seed (same cache, same config otherwise, a method ``xmic.train.stacked`` can stack),
claims each group's runs, and trains each group with ``fit`` (several seeds, one stacked model) into the runs' own
folders. Output: the ids of the runs trained. It only trains: ``run_one`` then scores every
run as usual (a trained run is not trained again). A group that fails is left to ``run_one``,
which trains or resumes each of its runs alone (a stacked ``last.pt`` resumes alone), so
stacking never costs a run.
"""
from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from xmic.config import XmicError, config_to_dict
from xmic.files.atomic import make_dirs, remove_file
from xmic.grid.layout import FAILED
from xmic.grid.plan import run_config
from xmic.grid.state import run_state
from xmic.train.config import TrainConfig
from xmic.train.loop import fit
from xmic.train.run_folder import LAST
from xmic.train.stacked import stackable


def seed_groups(grid_dir: Path, runs: list[dict]) -> list[list[tuple[dict, TrainConfig]]]:
    """Groups (of two or more) of fresh runs that differ only in their seed."""
    groups: dict = {}
    for run in runs:
        d = grid_dir / run["dir"]
        if run_state(grid_dir, run)["state"] != "pending" or (d / LAST).exists():
            continue
        cfg = run_config(grid_dir, run)
        if not stackable(cfg) or cfg.epochs < 1:
            continue
        key = (str(run["cache"]), repr(sorted(config_to_dict(replace(cfg, seed=0)).items())))
        groups.setdefault(key, []).append((run, cfg))
    return [g for g in groups.values() if len(g) > 1]


def train_seed_groups(grid_dir: Path, runs: list[dict], bank_loader, echo, take_claim,
                      show) -> list[str]:
    """``take_claim(run_dir)``: the runner's claim on a run, or None; ``show(rid, line)``: a
    training line, shown with its runs' ids."""
    grid_dir = Path(grid_dir)
    trained = []
    for group in seed_groups(grid_dir, runs):
        claims = []
        for run, _ in group:
            make_dirs(grid_dir / run["dir"], grid_dir)
            claim = take_claim(grid_dir / run["dir"])
            if claim is None:
                break
            claims.append(claim)
        try:
            if len(claims) < len(group):  # another runner holds one of them: train them alone
                continue
            ids = [run["id"] for run, _ in group]
            for run, _ in group:
                remove_file(grid_dir / run["dir"] / FAILED, grid_dir)
            echo(f"runs {', '.join(ids)}: trained together as one stacked model")
            try:
                fit(group[0][0]["cache"], [c for _, c in group],
                              [grid_dir / run["dir"] for run, _ in group],
                              echo=functools.partial(show, "+".join(ids)),
                              bank_loader=bank_loader)
            except (XmicError, OSError, RuntimeError, ValueError) as e:
                echo(f"runs {', '.join(ids)}: stacked training stopped ({type(e).__name__}: "
                     f"{e}); each run is trained or resumed alone")
                continue
            trained += ids
        finally:
            for c in claims:
                c.release()
    return trained


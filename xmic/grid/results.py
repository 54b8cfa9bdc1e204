"""A grid's tidy results: every finished score as rows of ``xmic.evaluate.results``.

Input: a grid folder and its plan. Output: ``grid_results`` -> a pandas DataFrame, one row per
(run, target, metric), ``method`` ordered as the recipe orders it, plus how many planned
(run, target) scores are still missing; ``GRID/results.parquet`` written by ``grid run`` when it
ends and by ``grid table``; ``xmic.results(GRID)`` for notebooks. Every table and the figure
of ``xmic.grid.table`` are built from this frame.
"""
from __future__ import annotations

from pathlib import Path

from xmic.evaluate.results import RESULTS_FILE, metric_rows, overrides_hash, results_frame, write_results
from xmic.grid.state import read_metrics


def seed_stats(vals: list[float]):
    """(mean, std, seeds) of a cell's per-seed values; None when there are none."""
    import statistics
    if not vals:
        return None
    return (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))


def recipe_order(grid: dict, key: str) -> list:
    """The recipe's order of its methods, sources, targets or labels: recorded in the plan,
    else (older plans, whose JSON sorted the recipe) the order the runs were expanded in."""
    order = grid["recipe"].get("order", {}).get(key)
    if order:
        return list(order)
    if key == "targets":
        return list(dict.fromkeys(t["dataset"] for r in grid["runs"] for t in r["targets"]))
    field = {"methods": "method", "sources": "source", "labels": "label"}[key]
    return list(dict.fromkeys(r[field] for r in grid["runs"]))


def grid_results(grid_dir: Path, grid: dict):
    """(DataFrame of every score found, number of planned (run, target) scores missing)."""
    rows, missing = [], 0
    name = grid["recipe"].get("name")
    for r in grid["runs"]:
        for t in r["targets"]:
            m = read_metrics(Path(grid_dir) / r["dir"], t)
            if m is None:
                missing += 1
                continue
            rows += metric_rows(m, grid=name, method=r["method"], trainer=r.get("trainer", r["method"]),
                                backbone=r.get("backbone"),
                                overrides=overrides_hash(r.get("config", {})), seed=r["seed"],
                                source_dataset=r["source"], source_split=r.get("split"),
                                target_dataset=t["dataset"], target_split=t["split"],
                                label=r["label"], in_dataset=t["dataset"] == r["source"],
                                run=r["id"])
    return results_frame(rows, recipe_order(grid, "methods")), missing


def write_grid_results(grid_dir: Path, grid: dict):
    """``GRID/results.parquet`` of what has finished; returns (frame, missing)."""
    df, missing = grid_results(grid_dir, grid)
    write_results(Path(grid_dir) / RESULTS_FILE, df, Path(grid_dir))
    return df, missing


def results(grid_dir):
    """A grid's results as a pandas DataFrame (one row per run, target and metric)."""
    from xmic.grid.plan import load_grid
    return grid_results(Path(grid_dir), load_grid(grid_dir))[0]


def backbone_names(grid: dict) -> list[str]:
    """The grid's backbones in plan order ([""]: caches not named by backbone)."""
    return list(dict.fromkeys(r.get("backbone", "") for r in grid["runs"]))


def rows_by_backbone(df, grid: dict):
    """(df, grid) whose rows are a method on a backbone (``grid.backbones.row_of``: ``xmic
    [vit-b-16]``), in the recipe's order of methods, each over the backbones in plan order."""
    from xmic.grid.backbones import row_of
    names = backbone_names(grid)
    runs = [{**r, "method": row_of(r), "row_method": r["method"]} for r in grid["runs"]]
    order = [f"{m} [{b}]" for m in recipe_order(grid, "methods") for b in names]
    recipe = {**grid["recipe"], "order": {**grid["recipe"].get("order", {}), "methods": order}}
    df = df.copy()
    has = df["backbone"].notna() & (df["backbone"] != "")
    df["method"] = df["method"].astype(str)
    df.loc[has, "method"] = df.loc[has, "method"] + " [" + df.loc[has, "backbone"] + "]"
    return results_frame(df.to_dict("records"), order), {**grid, "recipe": recipe, "runs": runs}


"""Steering a recipe from the command line: which rows, which values, from which saved grid.

Inputs: a loaded ``Recipe`` and ``xmic grid plan``'s steering options. Outputs:
- ``recipe_source(arg, grid_dir, extend)``: what ``--recipe`` names (a built-in, a YAML file, or
  a planned grid's folder, whose ``config.yaml`` is its recipe as planned, so a saved grid plans
  the same grid again), defaulting to the grid's own recipe under ``--extend``;
- ``steer(recipe, methods, drop, sweeps)``: the recipe with only ``methods`` (``--methods``)
  and without ``drop`` (``--drop-methods``) among its rows, then one row more per value of each
  ``--sweep KEY=V1,V2`` for every row it applies to (a ``model.GROUP.*`` key only to rows whose
  method reads that group; any other key to every trained row), named ``ROW-LEAF-VALUE``
  (``xmic-alpha-4``).
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import yaml

from xmic.config import ConfigError
from xmic.grid.layout import RECIPE_YAML
from xmic.grid.recipe import BUILT_IN, Recipe
from xmic.train.config import GROUPS
from xmic.train.methods import METHODS


def recipe_source(arg: str | None, grid_dir: Path, extend: bool) -> str:
    """The recipe ``--recipe`` names; a planned grid's folder is its saved ``config.yaml``."""
    if arg is None:
        if not extend:
            raise ConfigError("--recipe is needed to plan a new grid (a built-in name, a YAML "
                              "file, or a planned grid's folder)")
        arg = str(grid_dir)  # --extend: start from the grid's own recipe, as recorded
    p = Path(arg)
    if arg not in BUILT_IN and p.is_dir():
        if not (p / RECIPE_YAML).is_file():
            raise ConfigError(f"--recipe {arg}: a folder, but not a planned grid (no "
                              f"{RECIPE_YAML})")
        return str(p / RECIPE_YAML)
    return arg


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{option} {text!r}: give row names, e.g. xmic,zeroshot")
    return names


def _value_name(v) -> str:
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "x"


def _applies(key: str, trainer: str) -> bool:
    """A sweep key applies to a row: a method group's key to the methods reading that group,
    any other key to every method with weights to train."""
    parts = key.split(".")
    record = METHODS[trainer]
    if parts[0] == "model" and len(parts) > 2 and parts[1] in GROUPS:
        return parts[1] in record.config_groups
    return record.trains


def steer(recipe: Recipe, methods: str | None = None, drop: str | None = None,
          sweeps=()) -> Recipe:
    rows = dict(recipe.methods)
    if methods:
        keep = _names(methods, "--methods")
        unknown = [m for m in keep if m not in rows]
        if unknown:
            raise ConfigError(f"--methods: {unknown} are not rows of recipe {recipe.name} "
                              f"(its rows: {', '.join(rows)})")
        rows = {m: rows[m] for m in keep}
    for m in _names(drop, "--drop-methods") if drop else []:
        if m not in rows:
            raise ConfigError(f"--drop-methods: {m!r} is not a row of recipe {recipe.name} "
                              f"(its rows: {', '.join(rows)})")
        del rows[m]
    for spec in sweeps:
        key, sep, values = spec.partition("=")
        key = ".".join(part.strip() for part in key.split("."))
        if not sep or not key or not values.strip():
            raise ConfigError(f"--sweep {spec!r}: expected KEY=V1,V2, e.g. model.xmic.alpha=1,2,4")
        if key.split(".")[0] in ("method", "label", "split", "seed"):
            raise ConfigError(f"--sweep {spec!r}: {key} defines a row; use --methods, the "
                              "recipe's labels, or --seeds")
        try:
            parsed = [yaml.safe_load(v.strip()) for v in values.split(",") if v.strip()]
        except yaml.YAMLError:
            raise ConfigError(f"--sweep {spec!r}: its values are not plain numbers or names") \
                from None
        added = {}
        for name, over in rows.items():
            trainer = over.get("method", name)
            if not _applies(key, trainer):
                continue
            for v in parsed:
                new = f"{name}-{key.rsplit('.', 1)[-1]}-{_value_name(v)}"
                if new in rows or new in added:
                    raise ConfigError(f"--sweep {spec!r}: row {new!r} exists already")
                added[new] = {**over, "method": trainer, key: v}
        if not added:
            raise ConfigError(f"--sweep {spec!r}: no row of the recipe reads {key} "
                              f"(rows: {', '.join(rows)})")
        rows.update(added)
    if not rows:
        raise ConfigError("--methods/--drop-methods leave no row to plan")
    return replace(recipe, methods=rows,
                   optional_methods=tuple(m for m in recipe.optional_methods if m in rows))

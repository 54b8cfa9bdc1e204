"""Plan a grid: a recipe expanded into runs, checked against the caches, written once.

Inputs: a grid folder and a ``Recipe``. Output: ``GRID/grid.json`` (the resolved recipe and one
row per run: id, source dataset, cache and split, label, method and trainer method, seed, the
resolved training config, its run folder and its targets) and ``GRID/config.yaml`` beside it.
Everything a run needs is checked before anything runs: every cache opens, every split exists,
every method's config is valid, every cache holds the views and vocabulary the method reads.
Planning the same grid again is a no-op; planning another grid into the same folder is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import yaml

from xmic.cache import Cache
from xmic.files.atomic import write_json_atomic, write_text_atomic
from xmic.cache.fingerprint import fingerprint_id
from xmic.files.names import BadName, check_name
from xmic.files.json_files import read_json
from xmic.config import ConfigError, XmicError, config_to_dict, from_dict, load_config
from xmic.grid.class_lists import ListError, check_lists, derived_record, write_derived
from xmic.grid.extend import merge_plans
from xmic.grid.layout import GRID_FILE, RECIPE_YAML, RUNS
from xmic.grid import backbones
from xmic.grid.recipe import OTHER_VIEWS, Recipe
from xmic.train.build import check_inputs
from xmic.train.config import TrainConfig, migrate_config
from xmic.train.methods import METHODS
from xmic.files.long_lists import some



class GridError(XmicError):
    """A grid that cannot be planned or does not match its folder."""


MAX_RUNS = 5000


def row_id(source: str, label: str, method: str, backbone: str = "") -> str:
    """A row of the grid (its runs differ by seed): ``epic[-BACKBONE]-noun-xmic``."""
    return f"{source}-{backbone + '-' if backbone else ''}{label}-{method}"


def run_id(source: str, label: str, method: str, seed: int, backbone: str = "") -> str:
    return f"{row_id(source, label, method, backbone)}-seed{seed}"


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_unique_ids(runs: list[dict]) -> None:
    """Two rows may never share a run folder (``epic-x`` + ``noun`` vs ``epic`` + ``x-noun``)."""
    seen: dict[str, dict] = {}
    for r in runs:
        if r["id"] in seen:
            o = seen[r["id"]]
            raise GridError(
                f"runs ({r['source']}, {r['label']}, {r['method']}, seed {r['seed']}) and "
                f"({o['source']}, {o['label']}, {o['method']}, seed {o['seed']}) would share the "
                f"run folder {r['id']!r}; rename a dataset or a method")
        seen[r["id"]] = r


def _overrides(d: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in d.items()]


def expand(recipe: Recipe) -> tuple[list[dict], list[str]]:
    """One row per (backbone, source, label, method, seed), with its resolved config and
    targets; and the notes of optional rows left out (a method whose text tower cannot be
    loaded). Caches named DATASET@BACKBONE (``grid.backbones``) plan one grid per backbone:
    a source is scored on the targets of its own backbone only."""
    runs, skipped = [], []
    for backbone, caches in backbones.groups(recipe.caches).items():
        sources = {s: sp for s, sp in recipe.sources.items() if s in caches}
        targets = {t: sp for t, sp in recipe.targets.items() if t in caches}
        if not sources or not targets:
            skipped.append(f"backbone {backbone}: no {'source' if not sources else 'target'} "
                           "cache of it")
            continue
        sub = replace(recipe, caches=caches, sources=sources, targets=targets)
        got, notes = _expand_backbone(sub, backbone)
        runs += got
        skipped += notes
    check_unique_ids(runs)
    return runs, skipped


def _expand_backbone(recipe: Recipe, backbone: str) -> tuple[list[dict], list[str]]:
    """``expand`` for the caches of one backbone ('' when they are unnamed)."""
    opened: dict[str, Cache] = {}
    towers: dict[str, str | None] = {}  # vocabulary fingerprint id -> why it cannot load

    def tower_problem(vocab) -> str | None:
        key = fingerprint_id(vocab.fingerprint) + json.dumps(vocab.source, sort_keys=True)
        if key not in towers:
            try:
                _load_tower_on_cpu(vocab.fingerprint, vocab.source)
                towers[key] = None
            except XmicError as e:
                towers[key] = str(e)
        return towers[key]
    skipped: list[str] = []
    checked: set = set()  # (cache, split, view) whose shards were looked at

    def cache_of(ds: str) -> Cache:
        if ds not in opened:
            opened[ds] = Cache.open(recipe.caches[ds])
        return opened[ds]
    runs = []
    if backbone:
        backbones.check_models(backbone, {ds: cache_of(ds) for ds in recipe.caches})
    for source, split in recipe.sources.items():
        if split not in cache_of(source).splits():
            raise GridError(f"cache {recipe.caches[source]} has no split {split!r} to train on "
                            f"(splits: {cache_of(source).splits()})")
        for ds, tsplit in recipe.targets.items():
            if tsplit not in cache_of(ds).splits():
                raise GridError(f"cache {recipe.caches[ds]} has no split {tsplit!r} to score "
                                f"(splits: {cache_of(ds).splits()})")
        for label in recipe.labels:
            for name, over in recipe.methods.items():
                if over.get("model.conditioning_views") == OTHER_VIEWS:
                    other = sorted(v for v in cache_of(source).views()
                                   if v not in ("full_frame", "hand_crop"))
                    if not other or any(not set(other) <= set(cache_of(ds).views())
                                        for ds in recipe.targets):
                        continue  # Encoder II views in the source and every target, or no row
                    over = {**over, "model.conditioning_views": other}
                trainer = over.get("method", name)
                if len(runs) + len(recipe.seeds) > MAX_RUNS:
                    raise GridError(f"the recipe expands to more than {MAX_RUNS} runs; split it "
                                    "into several grids")
                base_novel = recipe.protocol == "base-to-novel"
                sets = [f"method={trainer}", f"label={label}", f"split={split}",
                        *(["classes.train_on=base"] if base_novel else []),
                        *_overrides(recipe.train),
                        *_overrides({k: v for k, v in over.items() if k != "method"})]
                try:
                    base = load_config(TrainConfig, None, sets)
                except ConfigError as e:
                    raise GridError(f"method {name!r}: {e}") from None
                absent = absent_vocabulary(base, [cache_of(source)] + [
                    cache_of(ds) for ds in recipe.targets if ds != source and
                    METHODS[trainer].open_vocabulary and not base_novel])
                if absent and name in recipe.optional_methods:
                    skipped.append(f"{row_id(source, label, name, backbone)}: {absent}")
                    continue
                inputs = check_inputs(cache_of(source), base)  # views, vocabulary of the source
                unfinished(cache_of(source), split, base.views(), checked)
                problem = tower_problem(inputs.vocab) if METHODS[trainer].tower else None
                if problem and name in recipe.optional_methods:
                    skipped.append(f"{row_id(source, label, name, backbone)}: {problem}")
                    continue
                if problem:
                    raise GridError(f"method {name!r} on {recipe.caches[source]}: {problem}")
                targets = _targets(recipe, source, base, cache_of, checked)
                for seed in recipe.seeds:
                    cfg = load_config(TrainConfig, None, [*sets, f"seed={seed}"])
                    rid = run_id(source, label, name, seed, backbone)
                    runs.append({"id": rid, "source": source,
                                 "cache": str(cache_of(source).root), "split": split,
                                 "label": label, "method": name, "trainer": trainer,
                                 "seed": seed, "config": config_to_dict(cfg),
                                 "dir": f"{RUNS}/{rid}", "targets": targets,
                                 **({"backbone": backbone} if backbone else {})})
    return runs, skipped


def _targets(recipe: Recipe, source: str, cfg: TrainConfig, cache_of, checked: set) -> list:
    """What a row's runs are scored on: every target whose vocabulary the method can score
    (a closed-vocabulary method: its own dataset only), each checked; base-to-novel: the
    source's own held-out split, its base and novel classes apart."""
    out = []
    for ds, tsplit in recipe.targets.items():
        if recipe.protocol == "base-to-novel":
            if ds == source:
                unfinished(cache_of(ds), tsplit, cfg.views(), checked)
                out += [{"dataset": ds, "cache": str(cache_of(ds).root), "split": tsplit,
                         "classes": part} for part in ("base", "novel")]
            continue
        if not cfg.record.open_vocabulary and ds != source:
            continue  # e.g. a probe: no classifier for another vocabulary
        check_inputs(cache_of(ds), cfg)
        unfinished(cache_of(ds), tsplit, cfg.views(), checked)
        out.append({"dataset": ds, "cache": str(cache_of(ds).root), "split": tsplit})
    return out


def absent_vocabulary(cfg: TrainConfig, caches: list) -> str | None:
    """Which of ``caches`` lack the vocabulary the row reads, in words that name the
    vocabulary's pattern and the datasets (one line for every row it concerns); None when all
    have it."""
    from xmic.cache.vocab import vocab_names
    lacking = [c.dataset for c in caches if cfg.vocab_name() not in vocab_names(c)]
    if not lacking:
        return None
    pattern = getattr(cfg.model, cfg.record.vocab)
    suffix = pattern.split(".", 1)[1] if "." in pattern else ""
    return (f"no vocabulary {pattern!r} in the {', '.join(sorted(set(lacking)))} cache(s)"
            + (f" (`xmic extract text CACHE --templates {suffix}` writes it)"
               if suffix and suffix != "photo" else ""))


def unfinished(cache: Cache, split: str, views: list[str], checked: set) -> None:
    """Refuse a split whose views still have shards to extract: a run would train (or be
    scored) on the part that is done, silently."""
    for v in views:
        if (str(cache.root), split, v) in checked:
            continue
        checked.add((str(cache.root), split, v))
        done = cache.committed(v)  # committed, failed segments included (they are counted)
        left = [s for s in cache.shards(split) if s not in done]
        if left:
            raise GridError(f"cache {cache.root}: view {v} of split {split} has {len(left)} of "
                            f"{len(cache.shards(split))} shard(s) not extracted "
                            f"({some(left, what='shards not extracted')}; states "
                            "in `xmic slurm status`); finish the extraction, then plan the grid")


def _load_tower_on_cpu(fingerprint: dict, source) -> None:
    from xmic.towers.text_tower import load_text_tower
    load_text_tower(fingerprint, source, "cpu")


def plan_grid(grid_dir: Path, recipe: Recipe, extend: bool = False,
              derive_lists: bool = False) -> dict:
    """Write (or find identical) ``GRID/grid.json``; returns it. Optional rows that cannot run
    are listed under ``skipped`` with the reason. ``extend``: a planned grid grows by the
    recipe's new runs and targets (``xmic.grid.extend``); the result says what was added.
    Every class list a cross-dataset evaluation needs is read first (``xmic.grid.class_lists``);
    ``derive_lists`` writes the missing ones by the exact-name rule into the grid folder."""
    grid_dir = Path(grid_dir)
    if (grid_dir / "cache.json").exists():
        raise GridError(f"{grid_dir} is a cache folder; plan the grid into a folder of its own")
    if grid_dir.is_dir() and not (grid_dir / GRID_FILE).exists():
        other = [p.name for p in grid_dir.iterdir()
                 if p.name != RECIPE_YAML and not p.name.startswith(".")]
        if other:
            raise GridError(f"{grid_dir} exists and holds {len(other)} other file(s) "
                            f"({', '.join(sorted(other)[:3])}); plan the grid into a new folder")
    runs, skipped = expand(recipe)
    try:
        derived = check_lists(runs, recipe.class_splits, derive_lists)
    except ListError as e:
        raise GridError(str(e)) from None
    lists = {"class_lists": derived_record(derived)} if derived else {}
    body = {"recipe": recipe.as_dict(), "runs": runs, **({"skipped": skipped} if skipped else {}),
            **lists}
    digest = _digest(body)
    grid = {"format": "xmic-grid", "version": 1, "sha256": digest, **body}
    path = grid_dir / GRID_FILE
    if path.exists():
        old = load_grid(grid_dir)
        if old["sha256"] == digest or same_without_order(old, body):
            return old
        if not extend:
            raise GridError(f"{grid_dir} holds another grid (recipe {old['recipe']['name']}, "
                            f"{len(old['runs'])} runs); plan into a new folder, or add this "
                            "recipe's runs to it with --extend")
        body, added = merge_plans(old, body["recipe"], runs, skipped)
        body.update(lists or ({"class_lists": old["class_lists"]} if "class_lists" in old else {}))
        check_unique_ids(body["runs"])
        write_derived(grid_dir, derived)
        grid = {"format": "xmic-grid", "version": 1, "sha256": _digest(body), **body,
                "extended": added}
        write_text_atomic(grid_dir / RECIPE_YAML, yaml.safe_dump(
            {k: v for k, v in body["recipe"].items() if k != "order"}, sort_keys=False), grid_dir)
        write_json_atomic(path, {k: v for k, v in grid.items() if k != "extended"}, grid_dir)
        return grid
    if grid_dir.is_file():
        raise GridError(f"{grid_dir} is a file; give a folder for the grid")
    grid_dir.mkdir(parents=True, exist_ok=True)  # the folder the user names may be a link
    write_text_atomic(grid_dir / RECIPE_YAML,
                      yaml.safe_dump({k: v for k, v in recipe.as_dict().items() if k != "order"},
                                     sort_keys=False), grid_dir)  # YAML keeps the order itself
    write_derived(grid_dir, derived)
    write_json_atomic(path, grid, grid_dir)
    return grid


def rewrite_grid(grid_dir: Path, grid: dict) -> dict:
    """Write a changed plan (its recipe's class lists: ``grid rescore``) with its new digest."""
    body = {k: grid[k] for k in ("recipe", "runs", "skipped", "class_lists") if k in grid}
    out = {"format": "xmic-grid", "version": 1, "sha256": _digest(body), **body}
    write_text_atomic(Path(grid_dir) / RECIPE_YAML, yaml.safe_dump(
        {k: v for k, v in body["recipe"].items() if k != "order"}, sort_keys=False), grid_dir)
    write_json_atomic(Path(grid_dir) / GRID_FILE, out, grid_dir)
    return out


def same_without_order(old: dict, body: dict) -> bool:
    """A plan written before plans recorded the recipe's order is the same grid."""
    recipe = {k: v for k, v in body["recipe"].items() if k != "order"}
    return "order" not in old["recipe"] and _digest({**body, "recipe": recipe}) == old["sha256"]


def load_grid(grid_dir: Path) -> dict:
    path = Path(grid_dir) / GRID_FILE
    if not path.exists():
        raise GridError(f"{grid_dir}: no {GRID_FILE}; plan it first with `xmic grid plan`")
    grid = read_json(path, "grid plan")
    if not isinstance(grid, dict) or grid.get("format") != "xmic-grid" or grid.get("version") != 1:
        raise GridError(f"{path}: not an xmic grid plan (version 1)")
    body = {k: grid[k] for k in ("recipe", "runs", "skipped", "class_lists") if k in grid}
    if "recipe" not in body or "runs" not in body or grid.get("sha256") != _digest(body):
        raise GridError(f"{path}: its content does not match its recorded sha256 (the plan was "
                        "edited by hand or damaged); plan the grid again into a new folder")
    _check_plan_names(grid, path)
    return grid


def _check_plan_names(grid: dict, path: Path) -> None:
    """Every name of the plan that becomes a path is plain, whatever wrote the file."""
    try:
        runs = grid["runs"]
        for r in runs:
            check_name("run", r["id"])
            if r["dir"] != f"{RUNS}/{r['id']}":
                raise GridError(f"{path}: run {r['id']!r} has folder {r['dir']!r}, not "
                                f"{RUNS}/{r['id']}")
            for t in r["targets"]:
                check_name("dataset", t["dataset"])
                check_name("split", t["split"])
        check_unique_ids(runs)
    except BadName as e:
        raise GridError(f"{path}: {e}") from None
    except (KeyError, TypeError) as e:
        raise GridError(f"{path}: not an xmic grid plan (malformed run entry: {e!r})") from None


def warmup_warnings(grid: dict) -> list[str]:
    """One line per method whose rows would train only inside the learning-rate warm-up."""
    from xmic.train.loop import warmup_only
    out = {}
    for r in grid["runs"]:
        if METHODS[r["trainer"]].trains and r["method"] not in out:
            why = warmup_only(from_dict(TrainConfig, migrate_config(r["config"]), "grid.json"))
            if why:
                out[r["method"]] = f"method {r['method']}: {why}"
    return list(out.values())


def evaluations(grid: dict) -> int:
    return sum(len(r["targets"]) for r in grid["runs"])


def run_config(grid_dir: Path, run: dict) -> TrainConfig:
    """A planned run's training config, tracked under the grid's name unless it names a group."""
    from dataclasses import replace
    cfg = from_dict(TrainConfig, migrate_config(run["config"]), f"{grid_dir}/grid.json: run {run['id']}")
    if not cfg.log.group:  # a grid's runs are tracked together, under its name
        cfg = replace(cfg, log=replace(cfg.log, group=Path(grid_dir).resolve().name))
    return cfg

"""Recipes: what an experiment grid holds, from a built-in name or a YAML file.

Input: ``paper-main``, ``paper-egtea``, ``paper-ablations`` or a YAML path, plus the overrides
of ``xmic grid plan`` (caches, seeds, class splits, train settings). Output: a ``Recipe``
(caches, sources, targets, labels, methods with their training overrides, seeds, train
overrides, class splits), checked for unknown keys and shapes; what the caches must hold is
checked when the grid is planned (``grid.plan``). YAML form::

    caches: {epic: caches/epic, ego4d: caches/ego4d}   # dataset -> cache dir
    sources: {epic: train}                             # dataset -> split to train on
    targets: {epic: validation, ego4d: val}            # dataset -> split every run is scored on
    labels: [noun]
    methods: {xmic: {}, zeroshot: {model.zeroshot_vocab: noun}}  # name -> training overrides
    seeds: [0, 1]
    train: {epochs: 5}                                 # overrides for every run (optional)
    class_splits: anno/                                # X-MIC list files (optional)
    display_names: {xmic-alpha-4: "X-MIC ($\\alpha$ = 4)"}   # LaTeX row names (optional)

A method entry may name the trainer method (``xmic-hands-only: {method: xmic, ...}``); else its
name is the trainer method. The built-in ``paper-main`` and ``paper-egtea`` hold the prompt-learning
rows (coop, cocoop) when the source cache's text tower can be loaded, and note their absence
otherwise; a YAML recipe that names them requires the tower. A linear probe is scored only on its own dataset (it has no
classifier for another vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmic.files.names import BadName, check_name
from xmic.config import ConfigError, read_yaml
from xmic.grid import backbones
from xmic.train.methods import METHODS, tower_methods

KEYS = ("caches", "sources", "targets", "labels", "methods", "seeds", "train", "class_splits",
        "display_names", "protocol")
# cross-dataset: the paper's (train on a source, score every target); base-to-novel: train on a
# dataset's base classes, score its held-out split's base and novel classes apart
PROTOCOLS = ("cross-dataset", "base-to-novel")
SAVED_KEYS = ("name", "optional_methods")  # a planned grid's config.yaml holds them too
ROW_KEYS = ("method", "label", "split", "seed")  # what a row is; never an override
MAX_SEEDS = 100
MAX_SEED = 2**32 - 1
OTHER_VIEWS = "@other-views"  # in a method's conditioning views: resolved from the source cache
# the paper's rows, named: a method added to METHODS does not join the paper's table unasked
PAPER_ROWS = ("zeroshot", "linear", "clip-adapter", "xmic", "coop", "cocoop")
# a zero-shot row over a prompt ensemble (`xmic extract text --templates kinetics`): not in the
# paper; built-in recipes plan it only where every cache of the row has that vocabulary
ENSEMBLE_ROWS = {"zeroshot-ensemble": {"method": "zeroshot",
                                       "model.zeroshot_vocab": "{label}.kinetics"}}
BASELINES = {"zeroshot": {}, **ENSEMBLE_ROWS,
             **{name: {} for name in PAPER_ROWS if name != "zeroshot"}}  # the table's order
# rows a built-in recipe plans only when the source cache's text tower can be loaded
PROMPT_ROWS = tower_methods()


def _ablations() -> dict:
    m = {"xmic": {},
         "xmic-hands-only": {"method": "xmic", "model.conditioning_views": ["hand_crop"]},
         "xmic-frames-only": {"method": "xmic", "model.conditioning_views": ["full_frame"]},
         "xmic-mean-pool": {"method": "xmic", "model.xmic.temporal_pool": "mean"},
         "xmic-no-spatial": {"method": "xmic", "model.xmic.spatial_layers": 0}}
    for a in (0.5, 1.0, 4.0):  # alpha 2 is the default row
        m[f"xmic-alpha-{a:g}"] = {"method": "xmic", "model.xmic.alpha": a}
    # Encoder II of another view set: the source cache's views besides full_frame / hand_crop
    # (e.g. DINO's, written with `rename`); planned only when the cache has them
    m["xmic-encoder2"] = {"method": "xmic", "model.conditioning_views": OTHER_VIEWS}
    return m


BUILT_IN = {
    "paper-main": {
        "sources": {"epic": "train", "ego4d": "train"},
        "targets": {"epic": "validation", "ego4d": "val"},
        "labels": ["noun", "verb"], "methods": BASELINES, "seeds": [0, 1, 2]},
    "paper-egtea": {
        "sources": {"epic": "train", "ego4d": "train"},
        "targets": {"epic": "validation", "ego4d": "val", "egtea": "test"},
        "labels": ["noun", "verb"], "methods": BASELINES, "seeds": [0, 1, 2]},
    "base-to-novel": {  # not the paper's: CoOp's setting, within each dataset
        "sources": {"epic": "train", "ego4d": "train", "egtea": "train"},
        "targets": {"epic": "validation", "ego4d": "val", "egtea": "test"},
        "labels": ["noun", "verb"], "protocol": "base-to-novel", "seeds": [0, 1, 2],
        "methods": {name: over for name, over in BASELINES.items() if name != "linear"}},
    "backbones": {  # not the paper's: one grid over every backbone given as DATASET@NAME
        "sources": {"epic": "train", "ego4d": "train"},
        "targets": {"epic": "validation", "ego4d": "val"},
        "labels": ["noun", "verb"], "methods": {"zeroshot": {}, "xmic": {}}, "seeds": [0, 1, 2]},
    "paper-ablations": {
        "sources": {"epic": "train"}, "targets": {"epic": "validation", "ego4d": "val"},
        "labels": ["noun", "verb"], "methods": _ablations(), "seeds": [0, 1, 2]},
}


@dataclass(frozen=True)
class Recipe:
    name: str
    caches: dict
    sources: dict
    targets: dict
    labels: tuple
    methods: dict
    seeds: tuple
    train: dict = field(default_factory=dict)
    class_splits: str | None = None
    optional_methods: tuple = ()  # planned only where they can run (text tower, vocabulary),
    #                               else noted
    display_names: dict = field(default_factory=dict)  # row -> its name in a paper's table
    protocol: str = "cross-dataset"

    def as_dict(self) -> dict:
        return {"name": self.name, "caches": dict(self.caches), "sources": dict(self.sources),
                "targets": dict(self.targets), "labels": list(self.labels),
                "methods": {k: dict(v) for k, v in self.methods.items()},
                "seeds": list(self.seeds), "train": dict(self.train),
                "class_splits": self.class_splits,
                # the recipe's order, kept for every table (the plan's JSON sorts mappings)
                "order": {"methods": list(self.methods), "sources": list(self.sources),
                          "targets": list(self.targets), "labels": list(self.labels)},
                **({"optional_methods": list(self.optional_methods)}
                   if self.optional_methods else {}),
                **({"display_names": dict(self.display_names)} if self.display_names else {}),
                **({"protocol": self.protocol} if self.protocol != PROTOCOLS[0] else {})}


def normalised_keys(overrides: dict, where: str) -> dict:
    """Overrides with each dotted key's parts stripped (`` method`` is ``method``), before any
    check reads them; two spellings of one key are refused."""
    out: dict = {}
    for k, v in overrides.items():
        if not isinstance(k, str):
            raise ConfigError(f"{where}: key {k!r} is not a name")
        key = ".".join(part.strip() for part in k.split("."))
        if key in out:
            raise ConfigError(f"{where}: {key!r} is given twice (as {k!r} too)")
        out[key] = v
    return out


def _refuse_row_keys(overrides: dict, where: str) -> None:
    """A row is (source, label, method, seed): an override may not change what it trains."""
    bad = sorted(k for k in overrides if k.split(".")[0] in ROW_KEYS)
    if bad:
        raise ConfigError(f"{where}: {bad} define a row of the grid and cannot be overridden "
                          "(the table would name a row by what it did not train); use the "
                          "recipe's sources, labels, methods and seeds")


def _mapping(data: dict, key: str, where: str, values=str) -> dict:
    v = data.get(key, {})
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise ConfigError(f"{where}: {key} must be a mapping of names")
    if values is str and not all(isinstance(x, str) for x in v.values()):
        raise ConfigError(f"{where}: {key} values must be names (dataset -> split or folder)")
    return dict(v)


def load_recipe(name_or_path: str, caches: dict | None = None, seeds=None,
                class_splits: str | None = None, train_sets=()) -> Recipe:
    """A built-in recipe or a YAML file, with ``xmic grid plan``'s overrides applied."""
    if name_or_path in BUILT_IN:
        data, where = dict(BUILT_IN[name_or_path]), f"recipe {name_or_path}"
    else:
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml") or not path.exists():
            raise ConfigError(f"--recipe {name_or_path!r}: not a built-in recipe "
                              f"({', '.join(BUILT_IN)}) nor an existing .yaml file")
        data, where = read_yaml(path), str(path)
    unknown = sorted(set(data) - set(KEYS) - set(SAVED_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a recipe has {list(KEYS)}")
    rc = _mapping(data, "caches", where)
    rc.update({k: str(v) for k, v in (caches or {}).items()})
    from xmic.cache.sources import resolve_cache  # hf-hub:/file:// caches, fetched, checked
    rc = {k: str(resolve_cache(v)) if isinstance(v, str) else v for k, v in rc.items()}
    methods = _mapping(data, "methods", where, values=dict)
    for name, over in methods.items():
        if not isinstance(over, dict):
            raise ConfigError(f"{where}: method {name!r} needs a mapping of training overrides")
        methods[name] = over = normalised_keys(over, f"{where}: method {name!r}")
        trainer = over.get("method", name)
        if not isinstance(trainer, str) or trainer not in METHODS:
            raise ConfigError(f"{where}: method {name!r} is not one of {list(METHODS)}; "
                              "name the trainer with `method:` for a variant")
        if name in METHODS and trainer != name:
            raise ConfigError(f"{where}: the row {name!r} is named after method {name} but its "
                              f"`method:` trains {trainer}; give the variant a name of its own")
    labels = data.get("labels", [])
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(x, str) and x in ("noun", "verb") for x in labels)):
        raise ConfigError(f"{where}: labels must be a non-empty list of noun / verb")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where}: labels {labels} name one label twice")
    seeds = list(seeds) if seeds is not None else data.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    if not all(0 <= s <= MAX_SEED for s in seeds) or len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{where}: seeds must be at most {MAX_SEEDS} integers in 0..{MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds {seeds} name one seed twice (a run per seed)")
    train = data.get("train") or {}
    if not isinstance(train, dict) or not all(isinstance(k, str) for k in train):
        raise ConfigError(f"{where}: train must be a mapping of training overrides")
    train = normalised_keys(train, f"{where}: train")
    for item in train_sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        train[".".join(part.strip() for part in key.split("."))] = value
    _refuse_row_keys(train, f"{where}: train (or --set)")
    for name, over in methods.items():
        _refuse_row_keys({k: v for k, v in over.items() if k != "method"},
                         f"{where}: method {name!r}")
    cs = class_splits or data.get("class_splits")
    if cs is not None and not isinstance(cs, str):
        raise ConfigError(f"{where}: class_splits must be the folder of the X-MIC list files, "
                          f"got {type(cs).__name__}")
    sources, targets = _mapping(data, "sources", where), _mapping(data, "targets", where)
    backbones.check_keys(rc, where)
    for kind, names in (("dataset", [*sources, *targets]), ("split", [*sources.values(),
                        *targets.values()]), ("method", list(methods))):
        for name in names:  # they become parts of run ids and folders
            try:
                check_name(kind, name)
            except BadName as e:
                raise ConfigError(f"{where}: {e}") from None
    if not sources or not targets or not methods:
        raise ConfigError(f"{where}: sources, targets and methods must each name at least one")
    for role, d in (("source", sources), ("target", targets)):
        missing = [ds for ds in d if ds not in backbones.datasets(rc)]
        if missing:
            raise ConfigError(f"{where}: {role} dataset(s) {missing} have no cache; give "
                              + " ".join(f"--cache {m}=DIR" for m in missing))
    protocol = _protocol(data, sources, targets, where)
    return Recipe(_name(name_or_path, data), rc, sources, targets, tuple(labels), methods,
                  tuple(seeds), train, str(cs) if cs else None,
                  tuple(m for m in (*PROMPT_ROWS, *ENSEMBLE_ROWS) if m in methods)
                  if name_or_path in BUILT_IN
                  else tuple(m for m in data.get("optional_methods") or () if m in methods),
                  _mapping(data, "display_names", where), protocol)


def _protocol(data: dict, sources: dict, targets: dict, where: str) -> str:
    protocol = data.get("protocol", PROTOCOLS[0])
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}: protocol {protocol!r} is not one of {list(PROTOCOLS)}")
    if protocol == "base-to-novel" and not set(sources) <= set(targets):
        raise ConfigError(f"{where}: base-to-novel scores each source on its own held-out "
                          f"split: give targets for {sorted(set(sources) - set(targets))}")
    return protocol


def _name(name_or_path: str, data: dict) -> str:
    """A built-in's name; a saved grid's recorded one; else the file's stem."""
    if name_or_path in BUILT_IN:
        return name_or_path
    saved = data.get("name")
    return saved if isinstance(saved, str) and saved else Path(name_or_path).stem

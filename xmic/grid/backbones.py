"""Several backbones in one grid: caches named ``DATASET@BACKBONE``, one per image encoder.

Input: a recipe's caches (``{"epic@vit-b-16": DIR, "epic@siglip": DIR, "ego4d@vit-b-16": ...}``,
or plain ``{"epic": DIR}``: one backbone, unnamed). Output: the caches grouped by backbone
(``groups``), each group planned as a grid of its own whose runs carry the backbone in their id
and row (``epic-vit-b-16-noun-xmic-seed0``, ``"backbone": "vit-b-16"``); a source is scored only
on targets of its own backbone, and ``check_models`` refuses a group whose caches were made by
different models (their classified views' fingerprints), so nothing is ever mixed.
"""
from __future__ import annotations

from xmic.config import ConfigError
from xmic.files.names import BadName, check_name

SEP = "@"


def split_key(key: str) -> tuple[str, str]:
    """``"epic@vit-b-16"`` -> ``("epic", "vit-b-16")``; ``"epic"`` -> ``("epic", "")``."""
    ds, _, backbone = key.partition(SEP)
    return ds, backbone


def check_keys(caches: dict, where: str) -> None:
    """Every part a plain name; a dataset's caches all named by backbone, or it has one."""
    seen: dict = {}
    for key in caches:
        ds, backbone = split_key(key)
        try:
            check_name("dataset", ds)
            if SEP in key:
                check_name("backbone", backbone)
        except BadName as e:
            raise ConfigError(f"{where}: cache {key!r}: {e}") from None
        seen.setdefault(ds, set()).add(bool(backbone))
    mixed = sorted(ds for ds, kinds in seen.items() if len(kinds) > 1)
    if mixed:
        raise ConfigError(f"{where}: {mixed} have caches with and without a backbone; name "
                          "every cache of a dataset DATASET@BACKBONE, or give it one cache")


def datasets(caches: dict) -> set:
    return {split_key(k)[0] for k in caches}


def groups(caches: dict) -> dict[str, dict[str, str]]:
    """backbone -> {dataset: cache folder}, in the recipe's order ('' when unnamed)."""
    out: dict = {}
    for key, path in caches.items():
        ds, backbone = split_key(key)
        out.setdefault(backbone, {})[ds] = path
    return out


def check_models(backbone: str, opened: dict) -> None:
    """Refuse a backbone whose caches were made by different image models (``same_model`` of
    their views' fingerprints: name, weights, QuickGELU)."""
    from xmic.cache.fingerprint import same_model
    made = {ds: next(iter(c.views().values()))["fingerprint"] for ds, c in opened.items()
            if c.views()}
    first = next(iter(made.values()), None)
    if first is not None and not all(same_model(first, fp) for fp in made.values()):
        models = "; ".join(f"{ds} ({fp['model'].get('name')}, weights "
                           f"{str(fp['model'].get('weights_sha256'))[:12]})"
                           for ds, fp in made.items())
        raise ConfigError(f"backbone {backbone or '(unnamed)'}: its caches were made by "
                          f"different models: {models}; name each model's caches "
                          "DATASET@BACKBONE so that runs never mix them")


def row_of(run: dict) -> str:
    """A run's row in a grid of several backbones: ``xmic [vit-b-16]``."""
    return f"{run['method']} [{run['backbone']}]" if run.get("backbone") else run["method"]

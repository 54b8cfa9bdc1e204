"""Class names across datasets: normalisation and the shared / novel split of a target vocabulary.

Inputs: class names as datasets write them (EPIC keys ``board:chopping``, Ego4D
``spoon_(spoon,_spoonful)``, X-MIC list lines ``chopping_board``), and optionally X-MIC's released
split lists ``{target}_{source}_{common|non_common}[_{exact|semantic}]_{noun|verb}.txt``.
Outputs: normalised names (docs/method.md §1) and ``{criterion: bool mask [C]}`` marking the target's
shared classes; files without a criterion in their name give the criterion ``default``.
"""
from __future__ import annotations

import re
from pathlib import Path

from xmic.cache.datasets import DATASETS, normalize_name
from xmic.config import XmicError

class ClassSplitError(XmicError):
    pass


def raw_key(name: str) -> str:
    """Case and ``_``/space folded, nothing dropped: keeps ``nut (food)`` apart from ``nut (tool)``
    (the generic normalisation merges 4 such pairs of Ego4D v2 nouns)."""
    return re.sub(r"[_\s]+", " ", name.strip().lower())


class ClassIndex:
    """Find a class by name: the raw name first, then the normalised name if unambiguous."""

    def __init__(self, classes: list[str]):
        self.raw = {raw_key(n): i for i, n in enumerate(classes)}
        self.norm: dict[str, list[int]] = {}
        for i, n in enumerate(classes):
            self.norm.setdefault(normalize_name(n), []).append(i)

    def find(self, name: str) -> int | None:
        if raw_key(name) in self.raw:
            return self.raw[raw_key(name)]
        hits = self.norm.get(normalize_name(name), [])
        return hits[0] if len(hits) == 1 else None


def derive_shared(source: list[str], target: list[str]) -> dict[str, list[bool]]:
    """Exact criterion without lists: a target class is shared when its normalised name is one
    of the source's."""
    src = {normalize_name(n) for n in source}
    return {"exact": [normalize_name(n) in src for n in target]}


def _read_list(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ClassSplitError(f"{path}: cannot read class list ({e.strerror})") from None


def read_class_splits(folder: Path, target: str, source: str, label: str,
                      target_classes: list[str]) -> dict[str, list[bool]]:
    """Shared masks over ``target_classes`` from X-MIC's list files in ``folder``."""
    folder = Path(folder)
    tags = {k: d.split_tag for k, d in DATASETS.items() if d.split_tag}
    for ds in (target, source):
        if ds not in tags:
            raise ClassSplitError(f"no X-MIC list tag for dataset {ds!r} (known: {sorted(tags)})")
    t, s = tags[target], tags[source]
    pattern = re.compile(rf"^{t}_{s}_(common|non_common)(?:_(exact|semantic))?_{label}\.txt$")
    found: dict[str, dict[str, list[str]]] = {}
    for p in sorted(folder.glob(f"{t}_{s}_*_{label}.txt")):
        m = pattern.match(p.name)
        if m:
            found.setdefault(m.group(2) or "default", {})[m.group(1)] = _read_list(p)
    if not found:
        raise ClassSplitError(f"{folder}: no {t}_{s}_(non_)common_*_{label}.txt lists for target "
                              f"{target}, source {source}")
    index = ClassIndex(target_classes)
    out = {}
    for crit, parts in sorted(found.items()):
        common = parts.get("common", [])
        unknown = [n for n in common + parts.get("non_common", []) if index.find(n) is None]
        if unknown:
            raise ClassSplitError(f"{folder}: {len(unknown)} name(s) in the {crit} lists for "
                                  f"{target}/{label} match no class of the target vocabulary "
                                  f"(or match several): {unknown[:10]}")
        mask = [False] * len(target_classes)
        for n in common:
            mask[index.find(n)] = True
        out[crit] = mask
    return out

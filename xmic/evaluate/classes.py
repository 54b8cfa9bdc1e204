"""Class names across datasets: normalisation and the shared / novel split of a target vocabulary.

Inputs: class names as datasets write them (EPIC keys ``board:chopping``, Ego4D
``spoon_(spoon,_spoonful)``, X-MIC list lines ``chopping_board``), and optionally X-MIC's released
split lists ``{target}_{source}_{common|non_common}[_{exact|semantic}]_{noun|verb}.txt``.
Outputs: normalised names (docs/method.md §1) and ``{criterion: bool mask [C]}`` marking the target's
shared classes; files without a criterion in their name give the criterion ``default``.
``find_class_splits`` reads the first of several folders that holds a pair's lists (the user's,
then lists a grid derived); ``derived_lists`` writes the exact-name rule's lists as files.
A list naming classes the vocabulary lacks is refused, naming the taxonomy version when the
vocabulary's size says it is another version than the lists' (``TAXONOMIES``).
"""
from __future__ import annotations

import re
from pathlib import Path

from xmic.cache.datasets import DATASETS, normalize_name
from xmic.config import XmicError
from xmic.files.long_lists import some

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


# Known vocabulary sizes of a dataset's taxonomy versions, and the version X-MIC's released
# lists name: a mismatch is the first explanation of names that match no class.
TAXONOMIES = {("ego4d", "noun"): {478: "Ego4D FHO v1", 521: "Ego4D FHO v2"},
              ("ego4d", "verb"): {115: "Ego4D FHO v1", 117: "Ego4D FHO v2"}}
LISTS_TAXONOMY = {"ego4d": "Ego4D FHO v2"}
DERIVED_RULE = ("exact: a target class is shared when its normalised name is one of the "
                "source's class names (derived, not released)")


def taxonomy_hint(dataset: str, label: str, n_classes: int) -> str:
    """Why a released list may not fit a vocabulary: its size is another taxonomy version's."""
    version = TAXONOMIES.get((dataset, label), {}).get(n_classes)
    wanted = LISTS_TAXONOMY.get(dataset)
    if version and wanted and version != wanted:
        return (f"; the cache's {dataset} {label} vocabulary has {n_classes} classes, the "
                f"{version} taxonomy, but X-MIC's lists name {wanted} classes: plan the cache "
                f"with the {wanted} taxonomy file")
    return ""


def derived_lists(source: list[str], target: list[str], target_tag: str, source_tag: str,
                  label: str) -> dict[str, list[str]]:
    """File name -> lines of the exact-name rule's lists (``derive_shared``), in X-MIC's file
    names and line format (one name per line, underscores for spaces)."""
    mask = derive_shared(source, target)["exact"]
    line = [raw_key(n).replace(" ", "_") for n in target]
    stem = f"{target_tag}_{source_tag}"
    return {f"{stem}_common_exact_{label}.txt": [n for n, m in zip(line, mask) if m],
            f"{stem}_non_common_exact_{label}.txt": [n for n, m in zip(line, mask) if not m]}


def find_class_splits(folders, target: str, source: str, label: str,
                      target_classes: list[str]) -> tuple[dict[str, list[bool]], Path]:
    """``read_class_splits`` from the first of ``folders`` that holds lists for the pair."""
    folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
    for i, folder in enumerate(folders):
        try:
            return read_class_splits(folder, target, source, label, target_classes), folder
        except MissingLists:
            if i == len(folders) - 1:
                raise
    raise ClassSplitError("no class-split folder given")


class MissingLists(ClassSplitError):
    """A folder holds no lists for a (target, source, label)."""


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
        released = "" if DATASETS[target].lists_released else (
            f"; X-MIC released no lists for {target} as a target (without --class-splits the "
            "exact-name rule derives them)")
        raise MissingLists(f"{folder}: no {t}_{s}_(non_)common_*_{label}.txt lists for target "
                           f"{target}, source {source}{released}")
    index = ClassIndex(target_classes)
    out = {}
    for crit, parts in sorted(found.items()):
        common = parts.get("common", [])
        unknown = [n for n in common + parts.get("non_common", []) if index.find(n) is None]
        if unknown:
            raise ClassSplitError(f"{folder}: {len(unknown)} name(s) in the {crit} lists for "
                                  f"{target}/{label} match no class of the target vocabulary "
                                  f"(or match several): {some(unknown, 10, what='unknown class names')}"
                                  + taxonomy_hint(target, label, len(target_classes)))
        mask = [False] * len(target_classes)
        for n in common:
            mask[index.find(n)] = True
        out[crit] = mask
    return out

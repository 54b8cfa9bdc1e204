"""The shared/novel class lists a grid's evaluations need, checked before anything trains.

Inputs: a grid folder, its runs (source dataset, label, targets with their caches), the folder
of X-MIC's list files the recipe names (``class_splits``) and whether lists X-MIC never released
(EGTEA's) may be derived. Output: ``check_lists`` reads every list each cross-dataset
evaluation needs (target x source x label, every criterion in the folder) against the target
cache's vocabulary and refuses, naming every missing or mismatched list (and the taxonomy
version that explains a mismatch), or returns the lists to derive; ``write_derived`` writes
them by the exact-name rule into ``GRID/class-splits/`` with ``derived.json`` (the rule and the
files); ``derived_record`` is what ``grid.json`` records of them; ``list_folders`` is what
evaluation reads: the recipe's folder, then the derived one (``xmic.grid.runner.rescore`` scores
finished runs again with other lists).
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache import Cache
from xmic.cache.datasets import DATASETS
from xmic.cache.vocab import load_vocab
from xmic.config import XmicError
from xmic.evaluate.classes import (DERIVED_RULE, ClassSplitError, MissingLists, derived_lists,
                                   read_class_splits)
from xmic.files.atomic import make_dirs, write_json_atomic, write_text_atomic
from xmic.grid.layout import DERIVED_LISTS, DERIVED_RECORD
from xmic.files.long_lists import some

SHOWN = 12


class ListError(XmicError):
    """A grid whose evaluations would fail on their class lists."""


def cross_pairs(runs: list[dict]) -> dict[tuple, dict]:
    """(target, source, label) -> the target's cache and the source's, for every evaluation
    on another dataset than the run was trained on."""
    out = {}
    for r in runs:
        for t in r["targets"]:
            if t["dataset"] != r["source"]:
                out.setdefault((t["dataset"], r["source"], r["label"]),
                               {"target_cache": t["cache"], "source_cache": r["cache"]})
    return dict(sorted(out.items()))


def _classes(cache: str, label: str) -> list[str]:
    return load_vocab(Cache.open(cache), label).classes


def check_lists(runs: list[dict], folder: str | None, derive: bool) -> dict[str, list[str]]:
    """Refuse (``ListError``, every problem named) a grid whose lists do not fit its caches;
    returns the derived lists to write (file name -> lines) for pairs the folder lacks when
    ``derive``. No folder and no ``derive``: evaluation derives by the exact-name rule itself."""
    if not folder and not derive:
        return {}
    if folder and not Path(folder).is_dir():
        raise ListError(f"--class-splits {folder}: not a folder (of X-MIC's list files "
                        "{target}_{source}_{common|non_common}_{criterion}_{label}.txt)")
    problems, derived = [], {}
    for (target, source, label), caches in cross_pairs(runs).items():
        classes = _classes(caches["target_cache"], label)
        try:
            if not folder:
                raise MissingLists("")
            read_class_splits(Path(folder), target, source, label, classes)
        except MissingLists as e:
            if not derive:
                problems.append(str(e))
                continue
            derived.update(derived_lists(_classes(caches["source_cache"], label), classes,
                                         DATASETS[target].split_tag, DATASETS[source].split_tag,
                                         label))
        except ClassSplitError as e:
            problems.append(str(e))
    if problems:
        shown = some(problems, SHOWN, sep="\n  ", what="class list problems")
        raise ListError(f"{len(problems)} cross-dataset evaluation(s) of this grid cannot read "
                        f"their shared/novel class lists:\n  {shown}\nadd the lists to "
                        f"{folder}, or give --derive-class-splits to write the missing ones by "
                        "the exact-name rule into the grid folder (recorded as derived); "
                        "nothing was trained")
    return derived


def derived_record(derived: dict[str, list[str]]) -> dict | None:
    """What ``grid.json`` (and ``derived.json``) records of derived lists: the rule, the files."""
    return {"rule": DERIVED_RULE, "files": sorted(derived)} if derived else None


def write_derived(grid_dir: Path, derived: dict[str, list[str]]) -> None:
    """Write the derived lists and ``derived.json`` into the grid folder."""
    if not derived:
        return
    folder = Path(grid_dir) / DERIVED_LISTS
    make_dirs(folder, grid_dir)
    for name, lines in sorted(derived.items()):
        write_text_atomic(folder / name, "".join(f"{n}\n" for n in lines), grid_dir)
    write_json_atomic(folder / DERIVED_RECORD, derived_record(derived), grid_dir)


def list_folders(grid_dir: Path, grid: dict) -> list[str] | None:
    """The folders evaluation reads lists from: the recipe's, then the lists the grid derived."""
    out = [grid["recipe"]["class_splits"]] if grid["recipe"].get("class_splits") else []
    if grid.get("class_lists"):
        out.append(str(Path(grid_dir).resolve() / DERIVED_LISTS))
    return out or None

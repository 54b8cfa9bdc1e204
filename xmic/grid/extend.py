"""Growing a planned grid in place: ``xmic grid plan GRID --recipe R --extend``.

Inputs: the grid's plan (``grid.json``) and the runs of the recipe given now (expanded and
checked like any plan). Output: the merged plan: every run planned before, untouched (its
folder, results and state stay), plus the recipe's new runs (new seeds, methods, sources or
labels), and new targets added to the runs that exist (scored by the next ``grid run``, their
training kept); the recipe's order of methods, sources, targets and labels is the new
recipe's, followed by what only the old one had. Refused, naming it: a run planned before whose
training config would change (another override of an existing method, another ``--set``), a
dataset whose cache moved, a target scored on another split (its column would mix them),
other class-split lists.
"""
from __future__ import annotations

from xmic.config import XmicError
from xmic.train.config import todays_record


class ExtendError(XmicError):
    pass


def merge_plans(old: dict, recipe: dict, runs: list[dict], skipped: list) -> dict:
    """The body (recipe, runs, skipped) of the grown plan."""
    o = old["recipe"]
    for ds, path in recipe["caches"].items():
        if ds in o["caches"] and o["caches"][ds] != path:
            raise ExtendError(f"dataset {ds!r} was planned with cache {o['caches'][ds]}, the recipe "
                              f"now names {path}; a grid reads one cache per dataset (plan a new grid)")
    for ds, split in recipe["targets"].items():
        if ds in o["targets"] and o["targets"][ds] != split:
            raise ExtendError(f"target {ds!r} was planned on split {o['targets'][ds]!r}, the "
                              f"recipe now names {split!r}; a table column is one split of a "
                              "dataset (plan a new grid for the other split)")
    if o.get("protocol", "cross-dataset") != recipe.get("protocol", "cross-dataset"):
        raise ExtendError(f"the grid was planned with protocol "
                          f"{o.get('protocol', 'cross-dataset')}, the recipe names "
                          f"{recipe.get('protocol', 'cross-dataset')}; plan a new grid")
    if (o.get("class_splits") or None) != (recipe.get("class_splits") or None):
        raise ExtendError(f"the grid was planned with class splits {o.get('class_splits')!r}, the "
                          f"recipe now names {recipe.get('class_splits')!r}; plan a new grid")
    by_id = {r["id"]: r for r in old["runs"]}
    merged, added, targets_added = [dict(r) for r in old["runs"]], [], 0
    index = {r["id"]: i for i, r in enumerate(merged)}
    for r in runs:
        have = by_id.get(r["id"])
        if have is None:
            added.append(r)
            continue
        row = ("source", "label", "method", "seed")
        if any(have[k] != r[k] for k in row):
            raise ExtendError(f"the new row ({', '.join(str(r[k]) for k in row)}) would share the "
                              f"run folder {r['id']!r} of the planned row "
                              f"({', '.join(str(have[k]) for k in row)}); rename a dataset or a "
                              "method")
        was = todays_record(have["config"], f"grid.json: run {r['id']}")
        if was != r["config"] or have["cache"] != r["cache"]:
            diff = sorted(k for k in set(was) | set(r["config"])
                          if was.get(k) != r["config"].get(k))
            raise ExtendError(f"run {r['id']} was planned with another training config "
                              f"(changed: {', '.join(diff) or 'cache'}); --extend adds runs and "
                              f"targets, it never changes a planned one (method {r['method']!r}: "
                              "give a changed override another method name)")
        known = {(t["dataset"], t["split"], t.get("classes")) for t in have["targets"]}
        new = [t for t in r["targets"]
               if (t["dataset"], t["split"], t.get("classes")) not in known]
        if new:
            merged[index[r["id"]]] = {**have, "targets": have["targets"] + new}
            targets_added += len(new)
    out = {**recipe}
    for key in ("caches", "sources", "targets", "methods"):
        out[key] = {**o[key], **recipe[key]}
    out["labels"] = list(dict.fromkeys([*recipe["labels"], *o["labels"]]))
    out["seeds"] = list(dict.fromkeys([*recipe["seeds"], *o["seeds"]]))
    before = o.get("order") or {}
    out["order"] = {k: list(dict.fromkeys([*recipe["order"][k], *before.get(k, o[k])]))
                    for k in recipe["order"]}
    notes = list(dict.fromkeys([*old.get("skipped", []), *skipped]))
    body = {"recipe": out, "runs": merged + added, **({"skipped": notes} if notes else {})}
    return body, {"runs_added": len(added), "targets_added": targets_added}

"""Planning extraction: annotations -> a fixed list of shards, after checking the inputs.

Input: a dataset kind, its annotation file (and side files), the media root, the views and the
hand-box source. ``plan``: segments sorted by video (each video decoded once per shard) -> the
cache's plan, plus ``extract_plan.json`` (dataset kind, media root, boxes and their format,
views, class lists, the plan's hash, the videos planned despite missing inputs). Before anything
is written, ``xmic.extract.coverage`` checks that every segment's frames and boxes exist;
planning a split again from other inputs says what changed (``replan_changes``). Output: the
counts, the coverage report and the changes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xmic.cache import Cache, CacheConfig
from xmic.cache.cache_folder import discard_if_new
from xmic.cache.datasets import read_dataset
from xmic.cache.index import check_ranges, make_plan
from xmic.cache.paths import PLAN_FILE, CacheError
from xmic.cache.redo import supersede
from xmic.config import XmicError
from xmic.extract.coverage import check_coverage
from xmic.extract.detections import BoxSource
from xmic.extract.media import check_media_ids
from xmic.files.atomic import write_json_atomic
from xmic.files.names import BadName, read_json


class PlanError(XmicError):
    """A plan or shard choice that extraction cannot follow."""


VIEWS = ("full_frame", "hand_crop")


def plan(cache_dir: Path, kind: str, annotations: Path, root: Path, split: str,
         views=VIEWS, boxes: Path | None = None, cache_config: CacheConfig | None = None,
         allow_missing: bool = False, inputs: str | None = None, **dataset_kw) -> dict:
    """Plan ``split``: its segments into shards, after the coverage check (frames and boxes of
    every segment; refused unless ``allow_missing``, which plans them: their segments are
    recorded failed when run). Planning a split again from another root or box source is
    refused while shards made from the old inputs are committed, unless ``inputs`` says what
    to do with them: ``moved`` (the same files elsewhere: keep them) or ``changed`` (supersede
    them: they are redone from the new inputs)."""
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise PlanError(f"unknown view(s) {bad}; extraction writes {list(VIEWS)}")
    if "hand_crop" in views and boxes is None:
        raise PlanError("view hand_crop needs --boxes (a folder of per-video detection pickles, "
                        "EPIC-100's or the 100DOH detector's, an X-MIC box pickle, or a box "
                        "table); without boxes plan --views full_frame")
    segs, classes = read_dataset(kind, Path(annotations), split, Path(root), **dataset_kw)
    check_media_ids(kind, segs.columns["video_id"], segs.columns["segment_id"], Path(annotations))
    order = sorted(range(len(segs)), key=lambda i: (segs.columns["video_id"][i],
                                                    segs.columns["start_frame"][i]))
    cols = {k: [v[i] for i in order] for k, v in segs.columns.items()}
    try:
        check_ranges(cols)  # frame numbers that fit the index, before the media is looked at
    except CacheError as e:
        raise CacheError(f"{annotations}: {e}") from None
    source = BoxSource(boxes) if "hand_crop" in views else None
    cov = check_coverage(kind, Path(root), cols, views, source)
    if cov.problems() and not allow_missing:
        raise PlanError(f"{annotations} (split {split}) against --root {root}"
                        f"{f' and --boxes {boxes}' if boxes else ''}:\n{cov.refusal()}\nfix the "
                        "paths, or plan anyway with --allow-missing (those segments are then "
                        "recorded failed, and `xmic extract run --redo-failed` redoes them once "
                        "the inputs are there)")
    box_kind = None
    if source is not None:
        first = next((v for v in dict.fromkeys(cols["video_id"]) if v not in cov.problems()), None)
        box_kind = source.describe(first)
    with discard_if_new(cache_dir):
        cache = Cache.open_or_create(cache_dir, kind, cache_config)
        path = cache.root / PLAN_FILE
        with cache.lock():  # the plan and extract_plan.json change together, one planner at a time
            meta = (read_json(path, "extraction plan") if path.exists()
                    else {"splits": {}, "classes": {}})
            for k, names in classes.items():  # refused before the plan changes
                if meta["classes"].get(k, names) != names:
                    raise PlanError(f"{cache.root}: split {split} has another {k} class list than "
                                    "the splits planned before; one cache holds one vocabulary "
                                    "per label")
            entry = {"dataset": kind, "annotations": str(Path(annotations).resolve()),
                     "root": str(Path(root).resolve()), "views": list(views),
                     "boxes": str(Path(boxes).resolve()) if boxes else None,
                     "boxes_format": box_kind}
            changes = replan_changes(cache, meta["splits"].get(split), entry, split, inputs)
            try:
                table = make_plan(cols, cache.config.shard_segments, split)
            except (CacheError, BadName) as e:
                raise CacheError(f"{annotations}: {e}") from None
            cache.add_plan(table, locked=True)
            digest = hashlib.sha256(json.dumps(table.to_pydict(), sort_keys=True,
                                               default=str).encode()).hexdigest()
            meta["splits"][split] = {**entry, "plan_sha256": digest, "segments": len(segs),
                                     "missing": dict(list(cov.problems().items())[:1000])}
            meta["classes"].update(classes)
            write_json_atomic(path, meta, cache.root)
    return {"segments": len(segs), "shards": len(cache.shards(split)), "plan_sha256": digest,
            "coverage": cov.report(), "missing": cov.problems(), "changes": changes,
            "boxes_format": box_kind}


INPUT_KEYS = ("root", "boxes", "boxes_format")


def replan_changes(cache, before: dict | None, after: dict, split: str, inputs: str | None) -> list:
    """What changed in a split's inputs since it was planned, refused while shards made from
    the old inputs are committed, unless ``inputs`` is ``moved`` (keep them) or ``changed``
    (supersede them, so they are redone)."""
    if before is None:
        return []
    changes = [f"{k}: {before.get(k)} -> {after.get(k)}" for k in INPUT_KEYS
               if before.get(k) != after.get(k)]
    if not changes:
        return []
    shards = set(cache.shards(split))
    made = sorted({s for v in cache.views() for s in cache.committed(v) if s in shards})
    if made and inputs not in ("moved", "changed"):
        raise PlanError(f"{cache.root}: split {split} was planned from other inputs "
                        f"({'; '.join(changes)}); {len(made)} committed shard(s) were made from "
                        f"the old ones ({', '.join(made[:10])}{' ...' if len(made) > 10 else ''}). "
                        "Give --inputs moved if the same files only moved (the shards are kept), "
                        "or --inputs changed to redo them from the new inputs (the old ones are "
                        "kept under views/VIEW/.superseded/)")
    if made and inputs == "changed":
        for shard in made:
            supersede(cache.root, list(cache.views()), shard)
    return changes + ([f"{len(made)} committed shard(s) "
                       f"{'kept' if inputs == 'moved' else 'superseded, to be redone'}"] if made else [])

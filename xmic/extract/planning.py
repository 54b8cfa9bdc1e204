"""Planning extraction: annotations -> a fixed list of shards, after checking the inputs.

Input: a dataset kind, its annotation file (and side files), the media root, the views and the
hand-box source. ``plan``: segments sorted by video (each video decoded once per shard) -> the
cache's plan, plus ``extract_plan.json`` (dataset kind, media root, boxes and their format,
views, class lists, the plan's hash, the videos planned despite missing inputs, the crop and
sampling settings coverage was measured at, which ``extract run`` takes as its defaults; the
typed records of ``xmic.extract.plan_record``). Before
anything is written, ``xmic.extract.coverage`` checks that every segment's frames and boxes exist
and that at least ``COVERAGE_FLOOR`` of the frames to encode have a usable hand box; planning a
split again from other inputs says what changed and which views it makes stale
(``replan_changes``). Output: the counts, the coverage report and the changes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from xmic.cache import Cache, CacheConfig
from xmic.cache.cache_folder import discard_if_new, half_made
from xmic.cache.claims import live_claims
from xmic.cache.datasets import read_dataset
from xmic.cache.index import check_ranges, make_plan
from xmic.cache.paths import ARCHIVE_INDEX, CACHE_JSON, CacheError
from xmic.cache.redo import supersede
from xmic.cache.sampling import frames_to_store, rule_of
from xmic.cache.datasets import dataset
from xmic.config import XmicError, config_to_dict
from xmic.extract.config import VIEWS, ExtractConfig
from xmic.extract.coverage import check_coverage
from xmic.extract.plan_record import BOX_INPUTS, ExtractPlan, SplitPlan
from xmic.extract.boxes import open_boxes
from xmic.extract.frame_archive import index_archives, use_index_store
from xmic.extract.media import check_media_ids, frame_source
from xmic.files.names import BadName
from xmic.files.long_lists import some


class PlanError(XmicError):
    """A plan or shard choice that extraction cannot follow."""


COVERAGE_FLOOR = 0.5  # least share of frames to encode with a usable hand box
# extraction settings coverage is measured at; recorded with the plan, `run`'s defaults
PLANNED_SETTINGS = ("hand_score", "object_score", "min_box_px", "sampling", "per_bin", "bins")


def planned_settings(cache_dir: Path) -> dict:
    """The extraction settings a cache's splits were planned (and their coverage measured)
    with, as ``ExtractConfig`` defaults for ``extract run``; {} for an older plan. Splits
    planned with different settings give none (the view fingerprints tell them apart)."""
    if not ExtractPlan.exists(cache_dir):
        return {}
    found = [p.settings for p in ExtractPlan.load(cache_dir).splits.values() if p.settings]
    return dict(found[0]) if found and all(f == found[0] for f in found) else {}


@dataclass(frozen=True)
class SplitSource:
    """Where a split's segments and media come from: the dataset kind, its annotation file, the
    media root, the split's name, the hand-box source (for hand crops) and the side files the
    dataset's record declares (``taxonomy=``, ``noun_classes=``...)."""
    dataset: str
    annotations: Path
    root: Path
    split: str = "train"
    boxes: Path | None = None
    side_files: dict = field(default_factory=dict)

    def where(self) -> str:
        return (f"{self.annotations} (split {self.split})"
                + (f" with --boxes {self.boxes}" if self.boxes else ""))


@dataclass(frozen=True)
class PlanPolicy:
    """What planning lets through: segments whose inputs are missing (``allow_missing``: they
    are recorded failed when run), a usable-hand share below ``coverage_floor``
    (``allow_low_coverage``), and committed shards of a split planned again from other inputs
    (``inputs``: ``moved`` keeps them, ``changed`` redoes the views that depend on the change)."""
    allow_missing: bool = False
    inputs: str | None = None
    allow_low_coverage: bool = False
    coverage_floor: float = COVERAGE_FLOOR


def plan(cache_dir: Path, source: SplitSource, views=VIEWS, cache_config: CacheConfig | None = None,
         settings: ExtractConfig | None = None, policy: PlanPolicy = PlanPolicy()) -> dict:
    """Plan ``source.split``: its segments into shards, after the coverage check (frames and
    boxes of every segment; refused unless ``policy.allow_missing``; and the share of frames to
    encode, by ``settings``' sampling, with a hand above its ``hand_score``: refused below the
    floor unless ``policy.allow_low_coverage``). Planning a split again from another root or
    box source is refused while shards made from the old inputs are committed, unless
    ``policy.inputs`` says what to do with them."""
    st, src = settings or ExtractConfig(), source
    bad = [v for v in views if v not in VIEWS]
    if bad:
        raise PlanError(f"unknown view(s) {bad}; extraction writes {list(VIEWS)}")
    if "hand_crop" in views and src.boxes is None:
        raise PlanError("view hand_crop needs --boxes (a folder of per-video detection pickles, "
                        "EPIC-100's or the 100DOH detector's, an X-MIC box pickle, or a box "
                        "table); without boxes plan --views full_frame")
    segs, classes, cols = _read_sorted(src)
    boxes = open_boxes(src.boxes, st.hand_score, st.object_score, st.min_box_px,
                       trimmed=dataset(src.dataset).trimmed) if "hand_crop" in views else None
    with discard_if_new(cache_dir):  # a refused plan of a new cache leaves no folder
        store = index_store(cache_dir)
        try:
            if store is not None:
                index_split_archives(src, cols["video_id"], store)
            use_index_store(store)
            cov, report = _coverage(src, cols, views, boxes, st, policy)
        finally:
            use_index_store(None)
    box_format = None
    if boxes is not None:
        first = next((v for v in dict.fromkeys(cols["video_id"]) if v not in cov.problems()), None)
        box_format = boxes.describe(first)
    # recorded where a clip's pickle counts from 0: the annotations' numbering is the default
    frame_keys = "+".join(sorted(cov.numbering)) if "clip" in cov.numbering else None
    entry = SplitPlan(src.dataset, str(Path(src.annotations).resolve()),
                      str(Path(src.root).resolve()), tuple(views),
                      str(Path(src.boxes).resolve()) if src.boxes else None, box_format,
                      frame_keys, {k: v for k, v in config_to_dict(st).items()
                                   if k in PLANNED_SETTINGS})
    cache, changes, digest = _write_plan(cache_dir, cache_config, src, entry, classes, cols,
                                         cov, policy)
    return {"segments": len(segs), "shards": len(cache.shards(src.split)), "plan_sha256": digest,
            "coverage": report, "missing": cov.problems(), "changes": changes,
            "box_format": box_format, "settings": entry.settings}


def index_store(cache_dir: Path) -> Path | None:
    """Where a cache keeps its frame tars' member indexes: ``CACHE/archive_index``, for a cache
    or a folder about to become one (never inside a folder of something else)."""
    root = Path(cache_dir)
    if root.is_symlink() and not root.is_dir():
        return None
    if (root / CACHE_JSON).is_file() or not root.exists() or (root.is_dir() and half_made(root)):
        return root / ARCHIVE_INDEX
    return None


def index_split_archives(src: SplitSource, video_ids: list, store: Path) -> None:
    """Build and keep the member index of every frame tar of the split's videos, in parallel
    processes, with a progress bar (EPIC-100's tars hold tens of thousands of members each);
    indexes of unchanged tars stored before are reused."""
    paths = []
    for vid in dict.fromkeys(video_ids):
        try:
            fs = frame_source(src.dataset, Path(src.root), vid)
        except XmicError:
            continue  # the coverage check reports it
        if fs.kind == "tar":
            paths.append(fs.path)
    if not paths:
        return
    from tqdm import tqdm
    with tqdm(total=len(paths), desc="index frame tars", unit="tar", disable=None) as bar:
        index_archives(paths, store, workers=min(4, os.cpu_count() or 1), progress=bar.update)


def _coverage(src: SplitSource, cols: dict, views, boxes, st: ExtractConfig,
              policy: PlanPolicy):
    """The coverage check of ``xmic.extract.coverage`` and its report, refused as ``policy``
    says."""
    rule = rule_of(src.dataset)
    cov = check_coverage(src.dataset, Path(src.root), cols, views, boxes, lambda a, b:
                         frames_to_store(rule, a, b, st.sampling, st.per_bin, st.bins))
    if cov.problems() and not policy.allow_missing:
        raise PlanError(f"{src.annotations} (split {src.split}) against --root {src.root}"
                        f"{f' and --boxes {src.boxes}' if src.boxes else ''}:\n{cov.refusal()}\n"
                        "fix the paths, or plan anyway with --allow-missing (those segments are "
                        "then recorded failed, and `xmic extract run --redo-failed` redoes them "
                        "once the inputs are there)")
    report = cov.report()
    if boxes is not None and not policy.allow_low_coverage:
        check_usable_share(cov, report, policy.coverage_floor, st.hand_score, src.where())
    return cov, report


def _write_plan(cache_dir: Path, cache_config, src: SplitSource, entry: SplitPlan,
                classes: dict, cols: dict, cov, policy: PlanPolicy):
    """The cache's plan and ``extract_plan.json``, changed together under the cache's lock;
    (cache, what changed, the plan's hash)."""
    split = src.split
    with discard_if_new(cache_dir):
        cache = Cache.open_or_create(cache_dir, src.dataset, cache_config)
        with cache.lock():  # the plan and extract_plan.json change together, one planner at a time
            meta = ExtractPlan.load(cache.root) if ExtractPlan.exists(cache.root) else ExtractPlan()
            for k, names in classes.items():  # refused before the plan changes
                if meta.classes.get(k, names) != names:
                    raise PlanError(f"{cache.root}: split {split} has another {k} class list than "
                                    "the splits planned before; one cache holds one vocabulary "
                                    "per label")
            changes = replan_changes(cache, meta.splits.get(split), entry, split, policy.inputs)
            try:
                table = make_plan(cols, cache.config.shard_segments, split)
            except (CacheError, BadName) as e:
                raise CacheError(f"{src.annotations}: {e}") from None
            cache.add_plan(table, locked=True)
            digest = hashlib.sha256(json.dumps(table.to_pydict(), sort_keys=True,
                                               default=str).encode()).hexdigest()
            meta.splits[split] = replace(entry, plan_sha256=digest, segments=len(cols["video_id"]),
                                         missing=dict(list(cov.problems().items())[:1000]))
            meta.classes.update(classes)
            meta.save(cache.root)
    return cache, changes, digest


def _read_sorted(src: SplitSource):
    """(segments, class lists, the plan's columns sorted by video and start), every id checked
    before it becomes a path and every frame number before it meets the index."""
    annotations = src.annotations
    segs, classes = read_dataset(src.dataset, annotations, src.split, src.root, **src.side_files)
    check_media_ids(src.dataset, segs.columns["video_id"], segs.columns["segment_id"], annotations)
    order = sorted(range(len(segs)), key=lambda i: (segs.columns["video_id"][i],
                                                    segs.columns["start_frame"][i]))
    cols = {k: [v[i] for i in order] for k, v in segs.columns.items()}
    try:
        check_ranges(cols)  # frame numbers that fit the index, before the media is looked at
    except CacheError as e:
        raise CacheError(f"{annotations}: {e}") from None
    return segs, classes, cols


def check_usable_share(cov, report: dict, floor: float, hand_score: float, where: str) -> None:
    """Refuse a split whose frames to encode have a usable hand box below ``floor``."""
    if cov.sampled_frames and report["usable_share"] < floor:
        raise PlanError(f"{where}: only {100 * report['usable_share']:.1f}% of the "
                        f"{cov.sampled_frames} frames to encode have a hand above hand_score="
                        f"{hand_score} (the floor is {100 * floor:g}%); the others' hand crops "
                        "would be full frames. Check that the boxes belong to these videos and "
                        "number their frames as the annotations do, plan with a lower threshold "
                        "(--set hand_score=0.5), or accept it with --allow-low-coverage")


def stale_views(cache, changed: list[str]) -> list[str]:
    """The cache views a change of inputs makes stale: every view when the media moved to
    other files, else only the views made with a crop rule (hand crops, under any name)."""
    views = cache.views()
    if any(k not in BOX_INPUTS for k in changed):
        return sorted(views)
    return sorted(v for v, rec in views.items() if rec["fingerprint"].get("crop") is not None)


def replan_changes(cache, before: SplitPlan | None, after: SplitPlan, split: str,
                   inputs: str | None) -> list:
    """What changed in a split's inputs since it was planned, refused while shards made from
    the old inputs are committed, unless ``inputs`` is ``moved`` (keep them) or ``changed``
    (supersede them, so they are redone)."""
    if before is None:
        return []
    was, now = before.inputs(), after.inputs()
    changed = [k for k in was if was[k] != now[k]]
    changes = [f"{k}: {was[k]} -> {now[k]}" for k in changed]
    if not changes:
        return []
    shards = set(cache.shards(split))
    running = {s: c for v in cache.views() for s, c in live_claims(cache.root, v).items()
               if s in shards}
    if running:
        who = "; ".join(f"{s} (host {c.get('host', '?')}, pid {c.get('pid', '?')}"
                        + (f", job {c['job']}" if c.get("job") else "") + ")"
                        for s, c in sorted(running.items())[:5])
        raise PlanError(f"{cache.root}: split {split} is being extracted from its old inputs "
                        f"right now ({len(running)} shard(s) running: {who}); wait for that run "
                        "to end (or stop it), then plan again")
    views = stale_views(cache, changed)
    made = sorted({s for v in views for s in cache.committed(v) if s in shards})
    if made and inputs not in ("moved", "changed"):
        raise PlanError(f"{cache.root}: split {split} was planned from other inputs "
                        f"({'; '.join(changes)}); {len(made)} committed shard(s) were made from "
                        f"the old ones ({some(made, what='shards from old inputs')}). "
                        "Give --inputs moved if the same files only moved (the shards are kept), "
                        "or --inputs changed to redo them from the new inputs (the old ones are "
                        "kept under views/VIEW/.superseded/)")
    if made and inputs == "changed":
        for shard in made:
            supersede(cache.root, views, shard)
    kept = sorted(set(cache.views()) - set(views))
    return changes + ([f"{len(made)} committed shard(s) of view(s) {', '.join(views)} "
                       f"{'kept' if inputs == 'moved' else 'superseded, to be redone'}"
                       + (f"; view(s) {', '.join(kept)} do not depend on the boxes and are kept"
                          if kept and inputs == "changed" else "")] if made else [])


def kept_line(broken: dict[str, str], then: str) -> str:
    """One line for the shards ``still_broken`` found, with what to do ``then``."""
    return (f"kept {len(broken)} shard(s): their failed segments' inputs are still missing: "
            + some([f"{shard} ({why})" for shard, why in broken.items()], sep="; ",
                   what="shards still missing inputs") + f"; fix them, then {then}")


def still_broken(cache, shards: list[str], meta: ExtractPlan | None = None) -> dict[str, str]:
    """Shard -> why its failed segments would fail again, for committed shards whose failed
    segments' frames or boxes are still missing (the coverage check of plan, on those
    segments only): redoing them (``--redo-failed``, ``slurm retry``) would supersede and
    re-encode them for nothing. ``meta``: the plan, when the caller has it loaded."""
    if not shards or (meta is None and not ExtractPlan.exists(cache.root)):
        return {}
    meta = meta or ExtractPlan.load(cache.root)
    committed = {v: cache.committed(v) for v in cache.views()}  # one listing per view
    sources: dict = {}  # split -> its box source, opened once
    out: dict[str, str] = {}
    for shard in shards:
        failed: set = set()
        for v, done in committed.items():
            if shard in done:
                rows = cache.shard_rows(v, shard).to_pylist()
                failed |= {r["segment_id"] for r in rows if r["status"] == "failed"}
        plan_rows = [r for r in cache.shard_segments(shard).to_pylist() if r["segment_id"] in failed]
        info = meta.splits.get(plan_rows[0]["split"]) if plan_rows else None
        if info is None:
            continue
        split = plan_rows[0]["split"]
        if split not in sources:
            sources[split] = (open_boxes(info.boxes, trimmed=dataset(info.dataset).trimmed)
                              if info.boxes and "hand_crop" in info.views else None)
        cols = {k: [r[k] for r in plan_rows] for k in ("segment_id", "video_id", "start_frame",
                                                      "stop_frame")}
        try:
            cov = check_coverage(info.dataset, Path(info.root), cols, info.views, sources[split])
        except XmicError as e:
            out[shard] = str(e)
            continue
        if cov.problems():
            vid, why = next(iter(cov.problems().items()))
            out[shard] = f"{vid}: {why}" + (f" (and {len(cov.problems()) - 1} more video(s))"
                                           if len(cov.problems()) > 1 else "")
    return out

"""EPIC-KITCHENS-100 annotations -> segments and class lists.

Inputs: ``EPIC_100_{train,validation}.csv`` (+ ``EPIC_100_{noun,verb}_classes.csv`` and
``EPIC_100_video_info.csv`` beside it or given). Output: ``(Segments, {"noun": names, "verb":
names})``; every segment takes its own video's fps. Errors name the file and row.
"""
from __future__ import annotations

import csv
from pathlib import Path

from xmic.cache.datasets.common import (DatasetError, Segments, check_unique, class_label,
                                        open_text, parse_timestamp, read_class_list)

EPIC_REQUIRED = ("narration_id", "video_id", "start_timestamp", "stop_timestamp",
                 "start_frame", "stop_frame")
EPIC_LABELS = ("verb_class", "noun_class")


def read_epic_video_fps(path: Path) -> dict[str, float]:
    rows = list(csv.DictReader(open_text(path, "EPIC video info").splitlines()))
    if not rows or "video_id" not in rows[0] or "fps" not in rows[0]:
        raise DatasetError(f"{path}: EPIC video info needs columns video_id,fps")
    return {r["video_id"]: float(r["fps"]) for r in rows}


def read_epic(path: Path, split: str, noun_classes: Path | None = None,
              verb_classes: Path | None = None, video_info: Path | None = None) -> tuple[Segments, dict]:
    """EPIC-100 annotation CSV -> (segments, {"noun": names, "verb": names})."""
    path = Path(path)
    here = path.parent
    nc = Path(noun_classes) if noun_classes else here / "EPIC_100_noun_classes.csv"
    vc = Path(verb_classes) if verb_classes else here / "EPIC_100_verb_classes.csv"
    vi = Path(video_info) if video_info else here / "EPIC_100_video_info.csv"
    rows = list(csv.DictReader(open_text(path, "EPIC annotation CSV").splitlines()))
    if not rows:
        raise DatasetError(f"{path}: no segments")
    missing = [c for c in EPIC_REQUIRED if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; is this an EPIC_100_*.csv file?")
    labelled = all(c in rows[0] for c in EPIC_LABELS)
    vocab = {}
    if labelled:
        for name, p, opt in (("noun", nc, "--noun-classes"), ("verb", vc, "--verb-classes")):
            if not p.exists():
                raise DatasetError(f"{path}: labelled annotations need the {name} class list; "
                                   f"{p} not found, give it with {opt} FILE")
            vocab[name] = read_class_list(p)
    fps_of = read_epic_video_fps(vi) if vi.exists() else {}
    segs = Segments()
    for i, r in enumerate(rows, start=2):
        where = f"{path}: row {i}"
        try:
            start_f, stop_f = int(r["start_frame"]), int(r["stop_frame"])
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: bad start/stop frame") from None
        start_s = parse_timestamp(r["start_timestamp"], where)
        stop_s = parse_timestamp(r["stop_timestamp"], where)
        if stop_f < start_f or stop_s < start_s:
            raise DatasetError(f"{where}: segment {r['narration_id']} stops before it starts")
        fps = fps_of.get(r["video_id"])
        if fps is None and fps_of:
            raise DatasetError(f"{where}: video {r['video_id']} is not in {vi}; use the video info "
                               "file of this release (or remove it to estimate fps from the CSV)")
        if fps is None:  # no video info: frames and times of the segment give the rate
            fps = round(stop_f / stop_s, 3) if stop_s > 0 else 0.0
        labels = {}
        for name in ("verb", "noun"):
            cid, label = (class_label(r[f"{name}_class"], vocab[name], path, i, name)
                          if labelled else (-1, ""))
            labels.update({f"{name}_id": cid, name: label})
        segs.append(segment_id=r["narration_id"], dataset="epic", split=split,
                    video_id=r["video_id"], recording_id=r["video_id"],
                    start_frame=start_f, stop_frame=stop_f,
                    start_sec=start_s, stop_sec=stop_s, fps=float(fps), **labels)
    check_unique(segs.columns["segment_id"], path, list(range(2, len(rows) + 2)))
    return segs, vocab

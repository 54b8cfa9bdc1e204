"""Ego4D FHO annotations -> segments and class lists.

Inputs: ``fho_lta_{train,val}.json`` and the taxonomy JSON (``verbs``, ``nouns``). Output:
``(Segments, {"noun": names, "verb": names})``; segment ids are
``{split}_{clip_uid}_{action_idx}``; a segment's recording is its clip's ``video_uid`` (several
clips are cut from one video), its ``clip_uid`` where the JSON has none. Errors name the file and
the clip's index.
"""
from __future__ import annotations

import json
from pathlib import Path

from xmic.cache.datasets.common import (DatasetError, Segments, check_unique, class_label,
                                        open_text, read_class_list)

EGO4D_REQUIRED = ("clip_uid", "action_idx", "action_clip_start_sec", "action_clip_end_sec",
                  "action_clip_start_frame", "action_clip_end_frame")


def read_ego4d(path: Path, split: str, taxonomy: Path) -> tuple[Segments, dict]:
    """Ego4D FHO ``fho_lta_*.json`` + taxonomy -> (segments, {"noun": names, "verb": names}).
    Segment ids are ``{split}_{clip_uid}_{action_idx}``."""
    path = Path(path)
    try:
        data = json.loads(open_text(path, "Ego4D annotation JSON"))
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    clips = data.get("clips") if isinstance(data, dict) else None
    if not isinstance(clips, list) or not clips:
        raise DatasetError(f'{path}: expected {{"clips": [...]}} with at least one clip')
    if taxonomy is None:
        raise DatasetError(f"{path}: Ego4D annotations need the taxonomy JSON: give --taxonomy FILE")
    vocab = {"verb": read_class_list(taxonomy, "verbs"), "noun": read_class_list(taxonomy, "nouns")}
    segs = Segments()
    for i, c in enumerate(clips):
        where = f"{path}: clips[{i}]"
        if not isinstance(c, dict):
            raise DatasetError(f"{where}: not an object")
        missing = [k for k in EGO4D_REQUIRED if k not in c]
        if missing:
            raise DatasetError(f"{where}: missing key(s) {missing}")
        try:
            s0, s1 = float(c["action_clip_start_sec"]), float(c["action_clip_end_sec"])
            f0, f1 = int(c["action_clip_start_frame"]), int(c["action_clip_end_frame"])
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: bad start/end seconds or frames") from None
        if s1 < s0 or f1 < f0:
            raise DatasetError(f"{where}: action stops before it starts")
        labels = {}
        for name in ("verb", "noun"):
            if f"{name}_label" not in c:
                labels.update({f"{name}_id": -1, name: ""})
                continue
            cid, label = class_label(c[f"{name}_label"], vocab[name], path, i, name)
            given = c.get(name)
            if isinstance(given, str) and given and given != label:
                raise DatasetError(f"{where}: {name}_label {cid} is {label!r} in {taxonomy} but the "
                                   f"clip says {given!r}; use the taxonomy of this annotation version")
            labels.update({f"{name}_id": cid, name: label})
        segs.append(segment_id=f"{split}_{c['clip_uid']}_{c['action_idx']}", dataset="ego4d",
                    split=split, video_id=str(c["clip_uid"]), start_frame=f0, stop_frame=f1,
                    recording_id=str(c.get("video_uid") or c["clip_uid"]),
                    start_sec=s0, stop_sec=s1,
                    fps=round((f1 - f0) / (s1 - s0), 3) if s1 > s0 else 30.0, **labels)
    check_unique(segs.columns["segment_id"], path, list(range(len(clips))))
    return segs, vocab

"""Dataset annotation files -> segment rows and class lists.

Inputs: EPIC-100 ``EPIC_100_{train,validation}.csv`` (+ ``EPIC_100_{noun,verb}_classes.csv`` and
``EPIC_100_video_info.csv`` beside it or given), Ego4D FHO ``fho_lta_{train,val}.json`` + taxonomy
JSON, and class lists (one name per line, an EPIC class CSV, or a taxonomy JSON field).
Outputs: ``Segments`` (column lists in the index's segment schema, see ``index.SEGMENT_FIELDS``)
and ``list[str]`` class names in id order. Every error names the file and the row or key.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from xmic.cache.layout import CacheError

EPIC_REQUIRED = ("narration_id", "video_id", "start_timestamp", "stop_timestamp",
                 "start_frame", "stop_frame")
EPIC_LABELS = ("verb_class", "noun_class")
EGO4D_REQUIRED = ("clip_uid", "action_idx", "action_clip_start_sec", "action_clip_end_sec",
                  "action_clip_start_frame", "action_clip_end_frame")

SPECIAL = {"use to": "use", "end of": "end", "bring into": "bring"}


def normalize_name(name: str) -> str:
    """EPIC ``pan:dust`` -> ``dust pan``; ``turn-on`` -> ``turn on``; Ego4D
    ``spoon_(spoon,_spoonful)`` -> ``spoon``; X-MIC ``chopping_board`` -> ``chopping board``."""
    s = name.strip().lower()
    s = re.sub(r"_?\(.*?\)", "", s)           # Ego4D synonym lists
    if ":" in s:
        s = " ".join(reversed(s.split(":")))  # EPIC keys: natural word order
    s = re.sub(r"[-_\s]+", " ", s).strip()
    return SPECIAL.get(s, s)


@dataclass
class Segments:
    """Column lists, one entry per segment, in annotation order."""
    columns: dict

    def __len__(self) -> int:
        return len(self.columns["segment_id"])


def _open_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CacheError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CacheError(f"{path}: cannot read {what} ({e})") from None


def parse_timestamp(text: str, where: str) -> float:
    """EPIC ``HH:MM:SS.ff`` -> seconds."""
    try:
        h, m, s = text.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        raise CacheError(f"{where}: bad timestamp {text!r}, expected HH:MM:SS.ff") from None


def read_class_list(path: Path, field: str | None = None) -> list[str]:
    """Class names in id order from a text list, an EPIC class CSV, or a taxonomy JSON."""
    path = Path(path)
    text = _open_text(path, "class list")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CacheError(f"{path}: not valid JSON ({e})") from None
        if field is None:
            raise CacheError(f"{path}: a taxonomy JSON needs --field (one of {sorted(data)})")
        names = data.get(field) if isinstance(data, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CacheError(f"{path}: key {field!r} is not a list of class names")
        return list(names)
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "id" not in rows[0] or "key" not in rows[0]:
            raise CacheError(f"{path}: an EPIC class CSV needs columns id,key")
        names: dict[int, str] = {}
        for i, r in enumerate(rows, start=2):
            try:
                cid = int(r["id"])
            except (TypeError, ValueError):
                raise CacheError(f"{path}: line {i}: bad class id {r['id']!r}") from None
            if cid in names:
                raise CacheError(f"{path}: line {i}: duplicate class id {cid}")
            names[cid] = r["key"]
        if sorted(names) != list(range(len(names))):
            raise CacheError(f"{path}: class ids are not 0..{len(names) - 1}")
        return [names[i] for i in range(len(names))]
    names = [ln.strip() for ln in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise CacheError(f"{path}: class list is empty")
    return names


def _check_unique(ids: list[str], path: Path, rows: list[int]) -> None:
    seen: dict[str, int] = {}
    for sid, row in zip(ids, rows):
        if sid in seen:
            raise CacheError(f"{path}: row {row}: duplicate segment id {sid!r} (first at row "
                             f"{seen[sid]}); segment ids must be unique")
        seen[sid] = row


def _label(value, classes: list[str] | None, path: Path, row: int, what: str) -> tuple[int, str]:
    try:
        cid = int(value)
    except (TypeError, ValueError):
        raise CacheError(f"{path}: row {row}: bad {what} id {value!r}") from None
    if classes is not None and not 0 <= cid < len(classes):
        raise CacheError(f"{path}: row {row}: {what} id {cid} out of range 0..{len(classes) - 1}; "
                         f"is this the right class list?")
    return cid, (classes[cid] if classes is not None else "")


def _empty_columns() -> dict:
    keys = ("segment_id", "dataset", "split", "video_id", "start_frame", "stop_frame",
            "start_sec", "stop_sec", "fps", "verb_id", "verb", "noun_id", "noun")
    return {k: [] for k in keys}


def read_epic_video_fps(path: Path) -> dict[str, float]:
    rows = list(csv.DictReader(_open_text(path, "EPIC video info").splitlines()))
    if not rows or "video_id" not in rows[0] or "fps" not in rows[0]:
        raise CacheError(f"{path}: EPIC video info needs columns video_id,fps")
    return {r["video_id"]: float(r["fps"]) for r in rows}


def read_epic(path: Path, split: str, noun_classes: Path | None = None,
              verb_classes: Path | None = None, video_info: Path | None = None) -> tuple[Segments, dict]:
    """EPIC-100 annotation CSV -> (segments, {"noun": names, "verb": names})."""
    path = Path(path)
    here = path.parent
    nc = Path(noun_classes) if noun_classes else here / "EPIC_100_noun_classes.csv"
    vc = Path(verb_classes) if verb_classes else here / "EPIC_100_verb_classes.csv"
    vi = Path(video_info) if video_info else here / "EPIC_100_video_info.csv"
    rows = list(csv.DictReader(_open_text(path, "EPIC annotation CSV").splitlines()))
    if not rows:
        raise CacheError(f"{path}: no segments")
    missing = [c for c in EPIC_REQUIRED if c not in rows[0]]
    if missing:
        raise CacheError(f"{path}: missing column(s) {missing}; is this an EPIC_100_*.csv file?")
    labelled = all(c in rows[0] for c in EPIC_LABELS)
    vocab = {}
    if labelled:
        for name, p, opt in (("noun", nc, "--noun-classes"), ("verb", vc, "--verb-classes")):
            if not p.exists():
                raise CacheError(f"{path}: labelled annotations need the {name} class list; "
                                 f"{p} not found, give it with {opt} FILE")
            vocab[name] = read_class_list(p)
    fps_of = read_epic_video_fps(vi) if vi.exists() else {}
    cols = _empty_columns()
    for i, r in enumerate(rows, start=2):
        where = f"{path}: row {i}"
        try:
            start_f, stop_f = int(r["start_frame"]), int(r["stop_frame"])
        except (TypeError, ValueError):
            raise CacheError(f"{where}: bad start/stop frame") from None
        start_s = parse_timestamp(r["start_timestamp"], where)
        stop_s = parse_timestamp(r["stop_timestamp"], where)
        if stop_f < start_f or stop_s < start_s:
            raise CacheError(f"{where}: segment {r['narration_id']} stops before it starts")
        fps = fps_of.get(r["video_id"])
        if fps is None and fps_of:
            raise CacheError(f"{where}: video {r['video_id']} is not in {vi}; use the video info "
                             "file of this release (or remove it to estimate fps from the CSV)")
        if fps is None:  # no video info: frames and times of the segment give the rate
            fps = round(stop_f / stop_s, 3) if stop_s > 0 else 0.0
        cols["segment_id"].append(r["narration_id"])
        cols["video_id"].append(r["video_id"])
        cols["start_frame"].append(start_f)
        cols["stop_frame"].append(stop_f)
        cols["start_sec"].append(start_s)
        cols["stop_sec"].append(stop_s)
        cols["fps"].append(float(fps))
        for name in ("verb", "noun"):
            cid, label = (_label(r[f"{name}_class"], vocab[name], path, i, name)
                          if labelled else (-1, ""))
            cols[f"{name}_id"].append(cid)
            cols[name].append(label)
    _check_unique(cols["segment_id"], path, list(range(2, len(rows) + 2)))
    n = len(rows)
    cols["dataset"] = ["epic"] * n
    cols["split"] = [split] * n
    return Segments(cols), vocab


def read_ego4d(path: Path, split: str, taxonomy: Path) -> tuple[Segments, dict]:
    """Ego4D FHO ``fho_lta_*.json`` + taxonomy -> (segments, {"noun": names, "verb": names}).
    Segment ids are ``{split}_{clip_uid}_{action_idx}``."""
    path = Path(path)
    try:
        data = json.loads(_open_text(path, "Ego4D annotation JSON"))
    except ValueError as e:
        raise CacheError(f"{path}: not valid JSON ({e})") from None
    clips = data.get("clips") if isinstance(data, dict) else None
    if not isinstance(clips, list) or not clips:
        raise CacheError(f'{path}: expected {{"clips": [...]}} with at least one clip')
    if taxonomy is None:
        raise CacheError(f"{path}: Ego4D annotations need the taxonomy JSON: give --taxonomy FILE")
    vocab = {"verb": read_class_list(taxonomy, "verbs"), "noun": read_class_list(taxonomy, "nouns")}
    cols = _empty_columns()
    for i, c in enumerate(clips):
        where = f"{path}: clips[{i}]"
        if not isinstance(c, dict):
            raise CacheError(f"{where}: not an object")
        missing = [k for k in EGO4D_REQUIRED if k not in c]
        if missing:
            raise CacheError(f"{where}: missing key(s) {missing}")
        try:
            s0, s1 = float(c["action_clip_start_sec"]), float(c["action_clip_end_sec"])
            f0, f1 = int(c["action_clip_start_frame"]), int(c["action_clip_end_frame"])
        except (TypeError, ValueError):
            raise CacheError(f"{where}: bad start/end seconds or frames") from None
        if s1 < s0 or f1 < f0:
            raise CacheError(f"{where}: action stops before it starts")
        cols["segment_id"].append(f"{split}_{c['clip_uid']}_{c['action_idx']}")
        cols["video_id"].append(str(c["clip_uid"]))
        cols["start_frame"].append(f0)
        cols["stop_frame"].append(f1)
        cols["start_sec"].append(s0)
        cols["stop_sec"].append(s1)
        cols["fps"].append(round((f1 - f0) / (s1 - s0), 3) if s1 > s0 else 30.0)
        for name in ("verb", "noun"):
            if f"{name}_label" not in c:
                cols[f"{name}_id"].append(-1)
                cols[name].append("")
                continue
            cid, label = _label(c[f"{name}_label"], vocab[name], path, i, name)
            given = c.get(name)
            if isinstance(given, str) and given and given != label:
                raise CacheError(f"{where}: {name}_label {cid} is {label!r} in {taxonomy} but the "
                                 f"clip says {given!r}; use the taxonomy of this annotation version")
            cols[f"{name}_id"].append(cid)
            cols[name].append(label)
    _check_unique(cols["segment_id"], path, list(range(len(clips))))
    n = len(clips)
    cols["dataset"] = ["ego4d"] * n
    cols["split"] = [split] * n
    return Segments(cols), vocab

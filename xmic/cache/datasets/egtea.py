"""EGTEA Gaze+ annotations -> segments and class lists.

Inputs: the parsed split CSVs (``*_split*_parsed.csv``: clip name, frames, times, 1-based verb and
noun ids and names), or the official ``{train,test}_split1.txt`` with ``verb_idx.txt`` /
``noun_idx.txt`` beside it. Output: ``(Segments, {"noun": names, "verb": names})`` with 0-based
ids (the official ones are 1-based); a segment id is the trimmed clip's id, which is also its
video (its parent video, the folder EGTEA ships it in, is ``egtea_video``). Errors name the file
and line.
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache.datasets.common import DatasetError, Segments, csv_rows

EGTEA_FPS = 24.0


def egtea_video(clip_id: str) -> str:
    """The video a clip id belongs to (``OP01-R01-PastaSalad-1002316-1004005-F024051-F024101``
    -> ``OP01-R01-PastaSalad``): EGTEA ships its clips as ``cropped_clips/{video}/{clip}.mp4``."""
    return clip_id.rsplit("-", 4)[0]


def egtea_clip_id(r: dict) -> str:
    return (f"{r['clip_name']}-{int(r['start_time_ms'])}-{int(r['end_time_ms'])}-"
            f"F{int(r['start_frame']):06d}-F{int(r['end_frame']):06d}")


def read_egtea_official(path: Path, split: str) -> tuple[Segments, dict]:
    """Official ``train_split1.txt`` lines ``CLIP_ID ACTION VERB NOUN`` (1-based ids) with
    ``verb_idx.txt`` / ``noun_idx.txt`` (``NAME ID`` per line) beside it -> the parsed layout."""
    folder = Path(path).parent
    names = {}
    for kind in ("verb", "noun"):
        f = folder / f"{kind}_idx.txt"
        if not f.exists():
            raise DatasetError(f"{path}: EGTEA's {f.name} must lie beside the split file")
        names[kind] = {}
        for ln in f.read_text().splitlines():
            if ln.strip():
                name, _, idx = ln.strip().rpartition(" ")
                names[kind][int(idx)] = name.strip()
    rows = []
    for i, ln in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = ln.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise DatasetError(f"{path}: line {i}: expected CLIP_ID ACTION VERB NOUN")
        clip, _, verb, noun = parts
        try:
            video, ms0, ms1, f0, f1 = clip.rsplit("-", 4)
            rows.append({"clip_name": video, "start_time_ms": ms0, "end_time_ms": ms1,
                         "start_frame": int(f0.lstrip("F")), "end_frame": int(f1.lstrip("F")),
                         "verb_id": verb, "verb_name": names["verb"][int(verb)],
                         "noun_ids": noun, "noun_names": names["noun"][int(noun)]})
        except (ValueError, KeyError) as e:
            raise DatasetError(f"{path}: line {i}: cannot read clip {clip!r} ({e})") from None
    return _egtea_segments(rows, split, path,
                           {k: [m[j] for j in sorted(m)] for k, m in names.items()})


def read_egtea(path: Path, split: str) -> tuple[Segments, dict]:
    if Path(path).suffix == ".txt":
        return read_egtea_official(path, split)
    need = ("clip_name", "start_frame", "end_frame", "start_time_ms", "end_time_ms", "verb_id",
            "verb_name", "noun_ids", "noun_names")
    files = sorted({Path(path), *Path(path).parent.glob("*_split*_parsed.csv")})
    vocab: dict[str, dict[int, str]] = {"verb": {}, "noun": {}}
    for f in files:  # class lists from every split file beside the annotations
        for r in csv_rows(f, need):
            vocab["verb"][int(r["verb_id"])] = r["verb_name"]
            for i, n in zip(r["noun_ids"].split(","), r["noun_names"].split(",")):
                vocab["noun"][int(i)] = n.strip()
    classes = {}
    for k, m in vocab.items():
        if sorted(m) != list(range(1, len(m) + 1)):
            raise DatasetError(f"{path}: {k} ids are not 1..{len(m)}; give all split files")
        classes[k] = [m[i] for i in range(1, len(m) + 1)]
    return _egtea_segments(csv_rows(path, need), split, path, classes)


def _egtea_segments(rows: list[dict], split: str, path: Path, classes: dict) -> tuple[Segments, dict]:
    segs = Segments()
    seen = set()
    for i, r in enumerate(rows, start=2):
        sid = egtea_clip_id(r)
        if sid in seen:
            raise DatasetError(f"{path}: row {i}: duplicate clip {sid}")
        seen.add(sid)
        v, n = int(r["verb_id"]) - 1, int(r["noun_ids"].split(",")[0]) - 1
        s0, s1 = int(r["start_frame"]), int(r["end_frame"])
        if s1 < s0:
            raise DatasetError(f"{path}: row {i}: clip {sid} stops before it starts")
        segs.append(segment_id=sid, dataset="egtea", split=split, video_id=sid,
                    recording_id=r["clip_name"],  # the session (e.g. OP01-R01-PastaSalad)
                    start_frame=s0, stop_frame=s1, start_sec=int(r["start_time_ms"]) / 1000,
                    stop_sec=int(r["end_time_ms"]) / 1000, fps=EGTEA_FPS,
                    verb_id=v, verb=classes["verb"][v], noun_id=n, noun=classes["noun"][n])
    return segs, classes

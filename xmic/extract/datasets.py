"""Datasets as users have them on disk: segments, class lists, and where each segment's frames are.

Inputs: a dataset kind, its annotation file and the media root. Outputs: ``annotations.Segments``
(the cache's segment schema), class lists ``{"noun": [...], "verb": [...]}``, and
``frame_source(kind, root, video_id, ...)`` -> a ``FrameSource`` (a JPEG folder or a video file,
and how annotation frame numbers map onto it). Layouts:
- epic: ``ROOT/P01/rgb_frames/P01_01/frame_0000000001.jpg`` (1-based) or ``ROOT/P01/videos/P01_01.MP4``;
- ego4d: ``ROOT/{clip_uid}.mp4``, only the central 4 s of each action are encoded (SPEC §1);
- egtea: trimmed clips ``ROOT/{clip_id}.mp4``; annotations in the parsed split CSV layout
  (official ids are 1-based; the cache stores them 0-based);
- csv: ``video,start_sec,end_sec,verb,noun`` where ``video`` is a video file or a frame folder
  (relative to ROOT); classes are the sorted names found.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from xmic.cache.annotations import Segments, read_ego4d, read_epic
from xmic.config import XmicError

EGO4D_WINDOW_S = 4.0
EGTEA_FPS = 24.0


class DatasetError(XmicError):
    pass


@dataclass(frozen=True)
class FrameSource:
    path: Path          # a JPEG folder or a video file
    kind: str           # "jpeg" | "video"
    first_frame: int    # annotation frame number of the source's first frame (JPEG: file 1)
    pattern: str = "frame_{:010d}.jpg"


def _rows(path: Path, need: tuple[str, ...]) -> list[dict]:
    try:
        rows = list(csv.DictReader(Path(path).read_text(encoding="utf-8-sig").splitlines()))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotations ({e.strerror})") from None
    if not rows:
        raise DatasetError(f"{path}: no rows")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}")
    return rows


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
        for r in _rows(f, need):
            vocab["verb"][int(r["verb_id"])] = r["verb_name"]
            for i, n in zip(r["noun_ids"].split(","), r["noun_names"].split(",")):
                vocab["noun"][int(i)] = n.strip()
    classes = {}
    for k, m in vocab.items():
        if sorted(m) != list(range(1, len(m) + 1)):
            raise DatasetError(f"{path}: {k} ids are not 1..{len(m)}; give all split files")
        classes[k] = [m[i] for i in range(1, len(m) + 1)]
    return _egtea_segments(_rows(path, need), split, path, classes)


def _egtea_segments(rows: list[dict], split: str, path: Path, classes: dict) -> tuple[Segments, dict]:
    cols = {k: [] for k in ("segment_id", "dataset", "split", "video_id", "start_frame", "stop_frame",
                            "start_sec", "stop_sec", "fps", "verb_id", "verb", "noun_id", "noun")}
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
        for k, val in (("segment_id", sid), ("dataset", "egtea"), ("split", split), ("video_id", sid),
                       ("start_frame", s0), ("stop_frame", s1),
                       ("start_sec", int(r["start_time_ms"]) / 1000), ("stop_sec", int(r["end_time_ms"]) / 1000),
                       ("fps", EGTEA_FPS), ("verb_id", v), ("verb", classes["verb"][v]),
                       ("noun_id", n), ("noun", classes["noun"][n])):
            cols[k].append(val)
    return Segments(cols), classes


def read_generic(path: Path, split: str, root: Path) -> tuple[Segments, dict]:
    rows = _rows(path, ("video", "start_sec", "end_sec", "verb", "noun"))
    classes = {k: sorted({r[k] for r in rows}) for k in ("verb", "noun")}
    cols = {k: [] for k in ("segment_id", "dataset", "split", "video_id", "start_frame", "stop_frame",
                            "start_sec", "stop_sec", "fps", "verb_id", "verb", "noun_id", "noun")}
    for i, r in enumerate(rows, start=2):
        try:
            s0, s1 = float(r["start_sec"]), float(r["end_sec"])
        except ValueError:
            raise DatasetError(f"{path}: row {i}: bad start_sec/end_sec") from None
        if s1 <= s0:
            raise DatasetError(f"{path}: row {i}: segment stops before it starts")
        fps = float(r.get("fps") or 0) or probe_fps(Path(root) / r["video"])
        for k, val in (("segment_id", r.get("segment_id") or f"{split}_{i - 2}"), ("dataset", "csv"),
                       ("split", split), ("video_id", r["video"]),
                       ("start_frame", int(round(s0 * fps))), ("stop_frame", int(round(s1 * fps)) - 1),
                       ("start_sec", s0), ("stop_sec", s1), ("fps", fps),
                       ("verb_id", classes["verb"].index(r["verb"])), ("verb", r["verb"]),
                       ("noun_id", classes["noun"].index(r["noun"])), ("noun", r["noun"])):
            cols[k].append(val)
    return Segments(cols), classes


def probe_fps(path: Path) -> float:
    if path.is_dir():
        raise DatasetError(f"{path}: a frame folder needs an fps column in the CSV")
    import av
    try:
        with av.open(str(path)) as c:
            return float(c.streams.video[0].average_rate)
    except (av.FFmpegError, FileNotFoundError, IndexError) as e:
        raise DatasetError(f"{path}: cannot read the video's frame rate ({e})") from None


def read_dataset(kind: str, annotations: Path, split: str, root: Path, **kw) -> tuple[Segments, dict]:
    if kind == "epic":
        return read_epic(annotations, split, kw.get("noun_classes"), kw.get("verb_classes"),
                         kw.get("video_info"))
    if kind == "ego4d":
        return read_ego4d(annotations, split, kw.get("taxonomy"))
    if kind == "egtea":
        return read_egtea(annotations, split)
    if kind == "csv":
        return read_generic(annotations, split, root)
    raise DatasetError(f"unknown dataset kind {kind!r}; use epic, ego4d, egtea or csv")


def check_media_id(kind: str, video_id, where: str) -> str:
    """An id read from annotations that becomes part of a path under ``--root``/``--boxes``:
    no absolute path, no '..', no NUL; for every kind but csv (relative paths), one plain name."""
    v = str(video_id)
    parts = Path(v).parts
    bad = (not v or "\0" in v or Path(v).is_absolute() or v.startswith("~") or ".." in parts
           or (kind != "csv" and (len(parts) != 1 or v in (".",) or "/" in v or "\\" in v)))
    if bad:
        raise DatasetError(f"{where}: video id {v!r} is not a plain name inside the media root "
                           "(absolute, '..' or a path); fix the annotation row")
    return v


def check_media_ids(kind: str, video_ids: list, segment_ids: list, annotations: Path) -> None:
    """Refuse, at plan time, any id that would lead a path out of ``--root`` or ``--boxes``."""
    for i, (v, s) in enumerate(zip(video_ids, segment_ids), start=1):
        check_media_id(kind, v, f"{annotations}: annotation {i} (segment {s})")


def frame_source(kind: str, root: Path, video_id: str) -> FrameSource:
    root = Path(root)
    check_media_id(kind, video_id, f"video {video_id!r}")
    if kind == "epic":
        participant = video_id.split("_")[0]
        folder = root / participant / "rgb_frames" / video_id
        if folder.is_dir():
            return FrameSource(folder, "jpeg", 1)
        for name in (f"{video_id}.MP4", f"{video_id}.mp4"):
            if (root / participant / "videos" / name).exists():
                return FrameSource(root / participant / "videos" / name, "video", 1)
        raise DatasetError(f"video {video_id}: neither {folder} nor "
                           f"{root / participant / 'videos' / (video_id + '.MP4')} exists")
    if kind in ("ego4d", "egtea"):
        path = root / f"{video_id}.mp4"
        if not path.exists():
            raise DatasetError(f"video {video_id}: {path} not found")
        # Ego4D clip frames are numbered from 0; EGTEA trimmed clips start at the action's frame
        return FrameSource(path, "video", 0)
    if kind == "csv":
        path = root / video_id
        if path.is_dir():
            return FrameSource(path, "jpeg", 1)
        if path.exists():
            return FrameSource(path, "video", 0)
        raise DatasetError(f"{path} not found")
    raise DatasetError(f"unknown dataset kind {kind!r}")


def encode_range(kind: str, start_frame: int, stop_frame: int, fps: float) -> tuple[int, int]:
    """The frames to draw from: Ego4D keeps the central 4 s of the action clip."""
    if kind == "ego4d":
        mid, half = (start_frame + stop_frame) / 2, EGO4D_WINDOW_S * fps / 2
        return max(start_frame, int(round(mid - half))), min(stop_frame, int(round(mid + half)) - 1)
    return start_frame, stop_frame

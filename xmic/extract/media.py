"""Where a segment's frames lie: the media layout of each dataset kind under ``--root``.

Inputs: a dataset kind, the media root, a video id read from the annotations. Outputs: a
``FrameSource`` (a JPEG folder or a video file, and the annotation frame number of its first
frame), and the check that an id stays
inside the root (which frames of a segment are encoded is ``xmic.cache.sampling``'s rule). Layouts:
- epic: ``ROOT/P01/rgb_frames/P01_01/frame_0000000001.jpg`` (1-based) or ``ROOT/P01/videos/P01_01.MP4``;
- ego4d: ``ROOT/{clip_uid}.mp4`` (the FHO action clips);
- egtea: trimmed clips ``ROOT/{clip_id}.mp4``;
- csv: ``ROOT/{video}``, a video file or a frame folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xmic.cache.datasets import DatasetError

@dataclass(frozen=True)
class FrameSource:
    path: Path          # a JPEG folder or a video file
    kind: str           # "jpeg" | "video"
    first_frame: int    # annotation frame number of the source's first frame (JPEG: file 1)
    pattern: str = "frame_{:010d}.jpg"


def check_media_id(kind: str, video_id, where: str) -> str:
    """An id read from annotations that becomes part of a path under ``--root``/``--boxes``:
    no absolute path, no '..', no NUL; for every kind but csv (relative paths), one plain name."""
    v = str(video_id)
    parts = Path(v).parts
    bad = (not v or "\0" in v or Path(v).is_absolute() or v.startswith("~") or ".." in parts
           or (kind != "csv" and (len(parts) != 1 or v in (".",) or "/" in v or "\\" in v))
           or (kind == "epic" and v.split("_")[0] in ("", ".", ".."))  # the participant folder
           or bool(_bad_components(v.replace("\\", "/").split("/"))))
    if bad:
        raise DatasetError(f"{where}: video id {v!r} is not a plain name inside the media root "
                           "(absolute, '..' or a path); fix the annotation row")
    return v


def _bad_components(comps: list[str]) -> list[str]:
    return [c for c in comps if c in ("", ".", "..") or "\0" in c or c.startswith("~")]


def media_path(root: Path, *parts: str, where: str = "") -> Path:
    """``root/parts`` for a path built from annotation ids: every component (each name derived
    from an id, e.g. EPIC's participant folder, and each part of a relative csv path) must be a
    plain name, and the joined path, normalised, must lie under ``root``. Links inside the media
    root are the user's layout and are followed (reads only)."""
    comps = [c for p in parts for c in str(p).replace("\\", "/").split("/")]
    bad = _bad_components(comps)
    path = Path(root).joinpath(*comps)
    base = os.path.normpath(os.path.abspath(root))
    inside = os.path.normpath(os.path.abspath(path))
    if bad or os.path.commonpath([base, inside]) != base:
        raise DatasetError(f"{where or 'media'}: the path {'/'.join(map(str, parts))!r} built from "
                           f"the annotations leaves the media root {root}; fix the annotation row")
    return path


def check_media_ids(kind: str, video_ids: list, segment_ids: list, annotations: Path) -> None:
    """Refuse, at plan time, any id that would lead a path out of ``--root`` or ``--boxes``."""
    for i, (v, s) in enumerate(zip(video_ids, segment_ids), start=1):
        check_media_id(kind, v, f"{annotations}: annotation {i} (segment {s})")


def frame_source(kind: str, root: Path, video_id: str) -> FrameSource:
    root = Path(root)
    check_media_id(kind, video_id, f"video {video_id!r}")
    where = f"video {video_id!r}"
    if kind == "epic":
        participant = video_id.split("_")[0]
        folder = media_path(root, participant, "rgb_frames", video_id, where=where)
        if folder.is_dir():
            return FrameSource(folder, "jpeg", 1)
        for name in (f"{video_id}.MP4", f"{video_id}.mp4"):
            path = media_path(root, participant, "videos", name, where=where)
            if path.exists():
                return FrameSource(path, "video", 1)
        raise DatasetError(f"video {video_id}: neither {folder} nor "
                           f"{root / participant / 'videos' / (video_id + '.MP4')} exists")
    if kind in ("ego4d", "egtea"):
        path = media_path(root, f"{video_id}.mp4", where=where)
        if not path.exists():
            raise DatasetError(f"video {video_id}: {path} not found")
        # Ego4D clip frames are numbered from 0; EGTEA trimmed clips start at the action's frame
        return FrameSource(path, "video", 0)
    if kind == "csv":
        path = media_path(root, video_id, where=where)
        if path.is_dir():
            return FrameSource(path, "jpeg", 1)
        if path.exists():
            return FrameSource(path, "video", 0)
        raise DatasetError(f"{path} not found")
    raise DatasetError(f"unknown dataset kind {kind!r}")

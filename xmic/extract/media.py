"""Where a segment's frames lie: the media layout of each dataset kind under ``--root``.

Inputs: a dataset kind, the media root, a video id read from the annotations. Outputs: a
``FrameSource`` (a JPEG folder or a video file, and the annotation frame number of its first
frame), and the check that an id stays
inside the root (which frames of a segment are encoded is ``xmic.cache.sampling``'s rule). Layouts (each
dataset's record in ``xmic.cache.datasets`` holds its own):
- epic: ``ROOT/P01/rgb_frames/P01_01/frame_0000000001.jpg`` (1-based), the same JPEGs in
  ``ROOT/P01/rgb_frames/P01_01.tar`` (as EPIC distributes them; read in place), or
  ``ROOT/P01/videos/P01_01.MP4``; per video, the first that exists;
- ego4d: ``ROOT/{clip_uid}.mp4`` (the FHO action clips);
- egtea: trimmed clips ``ROOT/{video}/{clip_id}.mp4`` as EGTEA ships them (``cropped_clips``),
  or flat, ``ROOT/{clip_id}.mp4``;
- csv: ``ROOT/{video}``, a video file or a frame folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xmic.cache.datasets import DatasetError, dataset

@dataclass(frozen=True)
class FrameSource:
    path: Path          # a JPEG folder or a video file
    kind: str           # "jpeg" | "tar" | "video" (xmic.extract.readers.READERS)
    first_frame: int    # annotation frame number of the source's first frame (JPEG: file 1)
    pattern: str = "frame_{:010d}.jpg"


def check_media_id(kind: str, video_id, where: str) -> str:
    """An id read from annotations that becomes part of a path under ``--root``/``--boxes``:
    no absolute path, no '..', no NUL; for every kind but csv (relative paths), one plain name."""
    v = str(video_id)
    parts = Path(v).parts
    record = dataset(kind)
    nested = record.frames == ("{video}",)  # the id is itself a relative path (generic csv)
    bad = (not v or "\0" in v or Path(v).is_absolute() or v.startswith("~") or ".." in parts
           or (not nested and (len(parts) != 1 or v in (".",) or "/" in v or "\\" in v))
           or (record.participant and participant(v) in ("", ".", ".."))
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


def participant(video_id: str) -> str:
    """EPIC's participant folder of a video id (``P01_01`` -> ``P01``)."""
    return video_id.split("_")[0]


def frame_source(kind: str, root: Path, video_id: str, start_frame: int | None = None) -> FrameSource:
    """Where a video's frames are, by its dataset's layouts: a JPEG folder or a tar of them
    (files numbered from 1), or the first video file that exists; a trimmed clip's first frame is the segment's start."""
    root, record = Path(root), dataset(kind)
    check_media_id(kind, video_id, f"video {video_id!r}")
    where = f"video {video_id!r}"
    names = {"video": video_id, "participant": participant(video_id),
             "parent": record.parent(video_id) if record.parent else video_id}
    tried = []
    for layout in record.frames:
        folder = media_path(root, layout.format(**names), where=where)
        if folder.is_dir():
            return FrameSource(folder, "jpeg", 1)
        tried.append(folder)
    for layout in record.archives:
        path = media_path(root, layout.format(**names), where=where)
        if path.is_file():
            return FrameSource(path, "tar", 1)
        tried.append(path)
    for layout in record.videos:
        path = media_path(root, layout.format(**names), where=where)
        if path.is_file():
            first = start_frame if record.trimmed and start_frame is not None else \
                record.video_first_frame
            return FrameSource(path, "video", first)
        tried.append(path)
    raise DatasetError(f"video {video_id}: {' / '.join(map(str, dict.fromkeys(tried)))} not found")

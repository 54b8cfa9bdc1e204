"""A generic CSV of trimmed actions -> segments and class lists.

Input: ``video,start_sec,end_sec,verb,noun`` (optional ``fps``, ``segment_id``, and
``recording``: segments of one recording are held out together; default the video), where ``video``
is a video file or a frame folder relative to the media root; a video's rate is read from the
file when the CSV gives none. Output: ``(Segments, {"noun": names, "verb": names})``, classes the
sorted names found. Errors name the file and row.
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache.datasets.common import DatasetError, Segments, csv_rows


def read_generic(path: Path, split: str, root: Path) -> tuple[Segments, dict]:
    rows = csv_rows(path, ("video", "start_sec", "end_sec", "verb", "noun"))
    classes = {k: sorted({r[k] for r in rows}) for k in ("verb", "noun")}
    segs = Segments()
    for i, r in enumerate(rows, start=2):
        try:
            s0, s1 = float(r["start_sec"]), float(r["end_sec"])
        except ValueError:
            raise DatasetError(f"{path}: row {i}: bad start_sec/end_sec") from None
        if s1 <= s0:
            raise DatasetError(f"{path}: row {i}: segment stops before it starts")
        fps = float(r.get("fps") or 0) or probe_fps(Path(root) / r["video"])
        segs.append(segment_id=r.get("segment_id") or f"{split}_{i - 2}", dataset="csv",
                    split=split, video_id=r["video"], recording_id=r.get("recording") or r["video"],
                    start_frame=int(round(s0 * fps)),
                    stop_frame=int(round(s1 * fps)), start_sec=s0, stop_sec=s1, fps=fps,
                    verb_id=classes["verb"].index(r["verb"]), verb=r["verb"],
                    noun_id=classes["noun"].index(r["noun"]), noun=r["noun"])
    return segs, classes


def probe_fps(path: Path) -> float:
    if path.is_dir():
        raise DatasetError(f"{path}: a frame folder needs an fps column in the CSV")
    import av
    try:
        with av.open(str(path)) as c:
            return float(c.streams.video[0].average_rate)
    except (av.FFmpegError, FileNotFoundError, IndexError) as e:
        raise DatasetError(f"{path}: cannot read the video's frame rate ({e})") from None

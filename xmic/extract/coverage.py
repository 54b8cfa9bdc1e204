"""Coverage before work: does every planned segment have its frames, and its hand boxes?

Inputs: a dataset kind, the media root, the plan's segment columns (video id, start, stop), the
views and the hand-box source. Output: ``Coverage``: per video, why its media is missing or too
short for a segment (a JPEG folder's listing, a tar's member index, a video container's header:
never a decode), the videos the box source lacks, box entries on frames outside their video,
the share of segments and of frames with a box entry, and the share of the frames extraction
will encode (``sampled``: the sampling policy's frames) that have a usable box (a hand above the
threshold); for trimmed clips, how their pickles number frames. ``refusal`` words the problems
(up to 20 videos and the count) and ``report`` the shares. Frames checked for media are each
segment's sampled range (``xmic.cache.sampling.frame_span``), so every policy's frames are
covered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from xmic.cache.datasets import DatasetError, dataset
from xmic.cache.sampling import frame_span, rule_of
from xmic.config import XmicError
from xmic.extract.frame_archive import archive_frames
from xmic.extract.media import FrameSource, frame_source
from xmic.files.long_lists import some


@dataclass
class Coverage:
    segments: int = 0
    frames: int = 0
    missing: dict = field(default_factory=dict)        # video -> why its frames are unusable
    missing_boxes: dict = field(default_factory=dict)  # video -> why it has no boxes
    bad_boxes: dict = field(default_factory=dict)      # video -> a box entry outside the video
    box_segments: int = 0
    box_frames: int = 0
    checked_boxes: bool = False
    segments_missing: int = 0  # segments whose frames are missing or too short
    sampled_frames: int = 0    # frames extraction encodes, of segments with boxes checked
    usable_frames: int = 0     # of those, frames with a usable box (a hand above hand_score)
    numbering: dict = field(default_factory=dict)  # trimmed clips: "video"/"clip" -> videos

    def problems(self) -> dict:
        return {**self.missing, **self.missing_boxes, **self.bad_boxes}

    def refusal(self) -> str:
        lines = []
        for what, items in (("frames", self.missing), ("hand boxes", self.missing_boxes),
                            ("box entries", self.bad_boxes)):
            if items:
                shown = some([f"{v}: {why}" for v, why in items.items()], sep="; ",
                             what=f"unusable {what}")
                lines.append(f"{len(items)} video(s) with unusable {what}: {shown}")
        return "\n".join(lines)

    def report(self) -> dict:
        out = {"segments": self.segments, "frames": self.frames,
               "videos_missing": len(self.missing), "segments_missing": self.segments_missing}
        if self.checked_boxes:
            out.update(box_segments=self.box_segments, box_frames=self.box_frames,
                       box_segment_share=self.box_segments / max(self.segments, 1),
                       box_frame_share=self.box_frames / max(self.frames, 1),
                       videos_without_boxes=len(self.missing_boxes),
                       sampled_frames=self.sampled_frames, usable_frames=self.usable_frames,
                       usable_share=self.usable_frames / max(self.sampled_frames, 1))
            if self.numbering:
                out["frame_keys"] = dict(sorted(self.numbering.items()))
        return out


def available_frames(src: FrameSource) -> np.ndarray | int:
    """Annotation frame numbers a JPEG folder or tar holds (sorted), or a video's frame count."""
    if src.kind == "jpeg":
        width = len(src.pattern.format(1))
        with os.scandir(src.path) as it:
            found = [e for e in it if len(e.name) == width and e.name.startswith("frame_")
                     and e.name.endswith(".jpg") and e.name[6:-4].isdigit()]
        odd = [e.name for e in found if not e.is_file()]  # a link to a file is the user's layout
        if odd:
            raise DatasetError(f"{src.path / odd[0]}: not a regular file (a FIFO, a device, a "
                               f"folder or a dangling link; {len(odd)} such frame(s) here); "
                               "frames are JPEG files: replace it")
        nums = [int(e.name[6:-4]) for e in found]
    elif src.kind == "tar":
        nums = archive_frames(src.path)
    else:
        return _video_frames(src)
    return np.sort(np.asarray(nums, np.int64)) + (src.first_frame - 1)


def _video_frames(src: FrameSource) -> int:
    import av
    try:
        with av.open(str(src.path)) as c:
            s = c.streams.video[0]
            if s.frames:
                return int(s.frames)
            rate = float(s.average_rate or s.guessed_rate or 0)
            dur = (float(s.duration * s.time_base) if s.duration is not None
                   else (c.duration or 0) / 1e6)
            return int(round(dur * rate)) + 1  # an estimate from the header: one frame of slack
    except (av.FFmpegError, IndexError, ValueError) as e:
        raise DatasetError(f"{src.path}: not a readable video ({type(e).__name__}: {e})") from None


def check_coverage(kind: str, root, cols: dict, views, boxes=None, sampled=None) -> Coverage:
    """The coverage of every planned segment (``cols``: the plan's columns; ``sampled(start,
    stop)``: the frames extraction encodes of a segment, for the usable-box share)."""
    cov = Coverage(segments=len(cols["video_id"]), checked_boxes=boxes is not None)
    first, end = frame_span(rule_of(kind), cols["start_frame"], cols["stop_frame"])
    cov.frames = int((end - first).sum())
    media: dict = {}       # the current video's (source, frames it holds) only
    count_boxes = BoxCount(cov, boxes) if boxes is not None else None
    trimmed = dataset(kind).trimmed  # each segment its own clip, starting at the segment
    from tqdm import tqdm
    for i, vid in enumerate(tqdm(cols["video_id"], desc="check frames and boxes", unit="seg",
                                 disable=None, leave=False)):
        key = (vid, cols["start_frame"][i] if trimmed else None)
        if key not in media:
            if i and cols["video_id"][i - 1] != vid:  # segments come sorted by video: memory
                media.clear()                          # holds the video in hand, not the split
                if count_boxes is not None:
                    count_boxes.held.clear()
            try:
                src = frame_source(kind, root, vid, cols["start_frame"][i])
                media[key] = (src, available_frames(src))
            except XmicError as e:
                cov.missing.setdefault(vid, str(e))
                media[key] = None
        if media[key] is None:
            cov.segments_missing += 1
            continue
        src, have = media[key]
        lo, hi = int(first[i]), int(end[i])
        short = _short(have, src, lo, hi)
        if short:
            cov.missing.setdefault(vid, f"segment {cols['segment_id'][i]} needs frames "
                                        f"{lo}..{hi - 1}, {short}")
            cov.segments_missing += 1
            continue
        if boxes is not None:
            span = (cols["start_frame"][i], cols["stop_frame"][i]) if trimmed else None
            ok = count_boxes(vid, cols["segment_id"][i], lo, hi, have, src, span)
            if ok and sampled is not None:
                frames = sampled(cols["start_frame"][i], cols["stop_frame"][i])
                cov.sampled_frames += len(frames)
                cov.usable_frames += int(boxes.usable_frames(vid, cols["segment_id"][i], frames,
                                                             span).sum())
    return cov


def _short(have, src, lo: int, hi: int) -> str | None:
    if isinstance(have, int):  # a video: its frames are first_frame .. first_frame + n - 1
        last = src.first_frame + have - 1
        return None if hi - 1 <= last else f"but {src.path} holds frames up to {last}"
    n = int(np.searchsorted(have, hi) - np.searchsorted(have, lo))
    if n == hi - lo:
        return None
    return f"but {src.path} lacks {hi - lo - n} of them" + (
        f" (it holds {have[0]}..{have[-1]})" if len(have) else " (it holds none)")


class BoxCount:
    """Counts each segment's box entries into ``cov``; holds the box frames of the video in
    hand (``held``: the caller clears it when the video changes)."""

    def __init__(self, cov, boxes):
        self.cov, self.boxes, self.held = cov, boxes, {}

    def __call__(self, vid: str, sid: str, lo: int, hi: int, have, src, span=None) -> bool:
        """One segment's box entries counted; False when its video has no usable boxes."""
        cov, boxes = self.cov, self.boxes
        if boxes.per_video and vid not in self.held:
            self.held[vid] = self._video(vid, sid, have, src, span)
        if boxes.per_video:
            frames = self.held[vid]
            if frames is None:
                return False
        else:
            frames = boxes.frames_with_boxes(vid, sid)
        n = int(np.searchsorted(frames, hi) - np.searchsorted(frames, lo))
        cov.box_frames += n
        cov.box_segments += n > 0
        return True

    def _video(self, vid: str, sid: str, have, src, span):
        """A video's frames with boxes (None when it has none usable), its problems noted."""
        cov, boxes = self.cov, self.boxes
        if not boxes.has_video(vid):
            cov.missing_boxes[vid] = f"{boxes.path / (vid + '.pkl')} not found"
            return None
        try:
            numbering = boxes.numbering(vid, span)
            frames = boxes.frames_with_boxes(vid, sid, span)
        except XmicError as e:
            cov.missing_boxes[vid] = str(e)
            return None
        if numbering is not None:
            cov.numbering[numbering] = cov.numbering.get(numbering, 0) + 1
        last = (src.first_frame + have - 1) if isinstance(have, int) else (
            int(have[-1]) if len(have) else None)
        if len(frames) and last is not None and frames[-1] > last:
            cov.bad_boxes[vid] = (f"{boxes.path / (vid + '.pkl')}: frame {int(frames[-1])} is "
                                  f"outside the video (its last frame is {last})")
        return frames


def usable_line(kind: str, split: str, report: dict, hand_score: float) -> str:
    """The usable-box share of a plan's coverage ``report``, in words (plan and the demo)."""
    words = {"clip": "from 0 over the clip", "video": "by the parent video's frames"}
    keys = report.get("frame_keys")
    return (f"usable hand boxes ({kind} {split}): {report['usable_frames']} of the "
            f"{report['sampled_frames']} frames to encode ({100 * report['usable_share']:.1f}%) "
            f"have a hand above hand_score={hand_score}; the rest will be full-frame crops"
            + ("; clip pickles numbered " + ", ".join(f"{words[k]} ({n})" for k, n in keys.items())
               if keys else ""))

"""Embed one clip outside any dataset: a video file or a folder of frames -> views [n, D].

Inputs: the path, an encoder (``encoders.FrozenEncoder``), the views wanted (full_frame,
hand_crop), optional start/end seconds, an optional box source, and the sampling policy.
Output: ``{view: float32 [n, D]}``, the frame numbers encoded and the clip's frames [lo, hi + 1)
(sampled by the EPIC rule, ``xmic.cache.sampling``). Without boxes the hand crop
is the full frame, and the returned notes say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmic.cache.datasets.generic_csv import probe_fps
from xmic.config import XmicError
from xmic.extract.boxes import open_boxes
from xmic.extract.boxes.folder import read_video_detections
from xmic.extract.config import ExtractConfig
from xmic.extract.views import view_tensors
from xmic.extract.media import FrameSource
from xmic.extract.readers import read_frames
from xmic.cache.sampling import frames_to_store


class ClipError(XmicError):
    """A clip that cannot be embedded, or no encoder for it."""


def clip_frames(path: Path, start: float | None, end: float | None, fps: float | None):
    """(FrameSource, first frame, last frame) of the clip's window."""
    path = Path(path)
    first = 0  # the frame number at second 0 of the clip
    if path.is_dir():
        numbers = sorted(int(p.name[6:16]) for p in path.glob("frame_??????????.jpg")
                         if p.name[6:16].isdigit())
        if not numbers:
            odd = sorted(p.name for p in path.glob("*.jpg"))[:3]
            raise ClipError(f"{path}: no frame named frame_NNNNNNNNNN.jpg (ten digits, EPIC's "
                            "layout) in this folder" + (f"; it holds {odd} ..." if odd else ""))
        src = FrameSource(path, "jpeg", 1, pattern="frame_{:010d}.jpg")
        lo, hi = numbers[0], numbers[-1]  # read by their numbers, from any first one
        first = lo
        rate = fps
    elif path.exists():
        src = FrameSource(path, "video", 0)
        rate = fps or probe_fps(path)
        import av
        try:
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                n = s.frames  # from the container; else from the duration; else count
                if not n and s.duration:
                    n = int(float(s.duration * s.time_base) * rate)
                if not n:
                    n = sum(1 for _ in c.decode(s))
        except (av.FFmpegError, IndexError) as e:
            raise ClipError(f"{path}: unreadable video ({e})") from None
        lo, hi = 0, max(0, int(n) - 1)
    else:
        raise ClipError(f"{path}: no such video or frame folder")
    if start is not None or end is not None:
        if rate is None:
            raise ClipError("--start/--end on a frame folder need --fps")
        lo = max(lo, int(round((start or 0) * rate)) + first)
        hi = min(hi, int(round(end * rate)) - 1 + first) if end is not None else hi
    if hi < lo:
        raise ClipError(f"{path}: the window {start}-{end} s holds no frames")
    return src, lo, hi


def clip_settings(sampling: dict, crop: dict) -> ExtractConfig:
    """The sampling and crop thresholds a run's cache was made with (its view fingerprints'
    ``sampling`` and ``crop``), as ``embed_clip`` settings; defaults where they record none."""
    keys = ("hand_score", "object_score", "min_box_px")
    return ExtractConfig(sampling=sampling.get("policy", "per_bin"),
                         per_bin=sampling.get("per_bin", 4), bins=sampling.get("bins", 16),
                         **{k: float(crop[k]) for k in keys if crop.get(k) is not None})


@dataclass(frozen=True)
class ClipSpan:
    """Which part of a clip: ``start``/``end`` in seconds (None: from the start, to the end),
    and a frame folder's frame rate (``fps``, needed with start or end)."""
    start: float | None = None
    end: float | None = None
    fps: float | None = None


def clip_boxes(boxes: Path, stem: str, st: ExtractConfig):
    """``(frame, image) -> box or None`` of a clip's ``--boxes``: the clip's own detection
    pickle (EPIC-100's or the 100DOH detector's, keyed by the clip's frame numbers), or any box
    source of extraction (a folder of such pickles named after the clip, a box table, an X-MIC
    box pickle)."""
    boxes = Path(boxes)
    if boxes.is_file() and boxes.suffix == ".pkl":
        video = read_video_detections(boxes, boxes.stem)  # None: an X-MIC box pickle, below
        if video is not None:
            where = f"{boxes}: clip {stem}"
            return lambda f, im: video.crop(f, im.width, im.height, st.hand_score,
                                            st.object_score, st.min_box_px, f"{where}, frame {f}")
    src = open_boxes(boxes, st.hand_score, st.object_score, st.min_box_px)
    return lambda f, im: src.box(stem, stem, f, im.width, im.height)


def embed_clip(path: Path, enc, views: list[str], span: ClipSpan = ClipSpan(),
               boxes: Path | None = None, settings: ExtractConfig = ExtractConfig()):
    """``settings``: the sampling (policy, per_bin, bins) and crop thresholds, those of the
    run's cache."""
    st = settings
    src, lo, hi = clip_frames(Path(path), span.start, span.end, span.fps)
    frames = frames_to_store("segment", lo, hi + 1, st.sampling, st.per_bin, st.bins)  # [lo, hi]
    images = read_frames(src, frames)
    notes = []
    stem = Path(path).stem
    box_of = clip_boxes(boxes, stem, st) if boxes else None
    if "hand_crop" in views and box_of is None:
        notes.append("no --boxes: hand crops are the full frames")
    tensors = view_tensors(images, frames, views, enc.pixels, box_of)
    return ({k: np.asarray(enc.encode_images(x).cpu().numpy(), dtype=np.float32)
             for k, x in tensors.items()}, frames, notes, (lo, hi + 1))


def encoder_for_run(ck: dict, view: str, model: str | None, weights: str | None,
                    device: str = "cpu"):
    """The encoder that made a run's features: ``model``/``weights`` if given, else the ones
    recorded in the markers of the run's cache; refused if it is not the run's model."""
    from xmic.cache import Cache
    from xmic.cache.fingerprint import diff, same_model
    from xmic.towers.encoders import load_encoder
    if not (model and weights):
        try:
            c = Cache.open(ck["cache"])
            producer = c.marker(view, sorted(c.committed(view))[0])["config"]["producer"]
            model, weights = model or producer["model"], weights or producer["weights"]
        except (XmicError, OSError, KeyError, IndexError):  # no cache, no marker, no producer
            raise ClipError("cannot find the encoder that made the run's features (its cache "
                            f"{ck.get('cache')} is gone or was imported); give --model and "
                            "--weights") from None
    enc = load_encoder(model, weights, device, "fp32", 0)
    trained = ck["fingerprints"]["views"][view]["model"]
    if not same_model({"model": trained}, {"model": enc.identity}):
        raise ClipError("the encoder differs from the one the run was trained on: "
                        + "; ".join(diff(trained, enc.identity)))
    return enc


def class_text(enc, names: list[str], prompt: str) -> np.ndarray:
    """[C, D] text embeddings of class names (already in prompt form, ``prompt_names``), each
    in ``prompt``."""
    if enc.tokenizer is None:
        raise ClipError(f"{enc.identity['name']} has no text tower; encode class names with the "
                        "open_clip model that makes the classified stream")
    return enc.encode_texts([prompt.format(n) for n in names]).numpy()

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
    if path.is_dir():
        files = sorted(path.glob("*.jpg"))
        if not files:
            raise ClipError(f"{path}: no .jpg frames in this folder")
        src = FrameSource(path, "jpeg", 1, pattern="frame_{:010d}.jpg")
        if not (path / "frame_0000000001.jpg").exists():
            raise ClipError(f"{path}: frames must be named frame_0000000001.jpg, ... (EPIC layout)")
        lo, hi = 1, len(files)
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
        lo = max(lo, int(round((start or 0) * rate)) + src.first_frame)
        hi = min(hi, int(round(end * rate)) - 1 + src.first_frame) if end is not None else hi
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


def embed_clip(path: Path, enc, views: list[str], span: ClipSpan = ClipSpan(),
               boxes: Path | None = None, settings: ExtractConfig = ExtractConfig()):
    """``settings``: the sampling (policy, per_bin, bins) and crop thresholds, those of the
    run's cache."""
    st = settings
    src, lo, hi = clip_frames(Path(path), span.start, span.end, span.fps)
    frames = frames_to_store("segment", lo, hi + 1, st.sampling, st.per_bin, st.bins)  # [lo, hi]
    images = read_frames(src, frames)
    notes = []
    box_src = open_boxes(boxes, st.hand_score, st.object_score, st.min_box_px) if boxes else None
    if "hand_crop" in views and box_src is None:
        notes.append("no --boxes: hand crops are the full frames")
    stem = Path(path).stem
    tensors = view_tensors(images, frames, views, enc.pixels, box_src and (
        lambda f, im: box_src.box(stem, stem, f, im.width, im.height)))
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

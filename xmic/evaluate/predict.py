"""Predict on any clip: a trained run's top-k classes of raw videos or frame folders.

Inputs: clips (video files or frame folders, optionally a time window; or a CSV listing them),
a run folder, the class names (a list, or a cache vocabulary ``CACHE:NAME``), optional hand
boxes, and the encoder (by default the one recorded in the run's cache). Output per clip: a
dict with the top-k classes (score and softmax probability over all classes), the number of
frames, notes and the run's method; ``ClipPredictor`` loads the run, encoder and class input
once for a whole batch of clips.
The clip is embedded with the sampling and crop thresholds of the run's cache (its
fingerprint), so it is scored on the features the run was trained on. Unlike the rest of
evaluation this reads raw media, so it imports the extraction stage.
"""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from xmic.cache import Cache, CacheError
from xmic.cache.datasets import normalize_name
from xmic.cache.vocab import check_prompts, check_template, load_vocab
from xmic.config import XmicError
from xmic.extract import clip_embed
from xmic.train.build import text_input
from xmic.train.inference import load_run, run_tower, score_clip


class PredictError(XmicError):
    """A clip, a class list or a run that predict cannot score together."""


class ClipPredictor:
    """A run, its encoder and the class input, loaded once, for any number of clips."""

    def __init__(self, run_dir: Path, classes: str | None = None, vocab: str | None = None,
                 boxes: Path | None = None, top_k: int = 5, model: str | None = None,
                 weights: str | None = None, device: str = "cpu"):
        net, cfg, ck = load_run(run_dir, device)
        enc = clip_embed.encoder_for_run(ck, cfg.model.classified_view, model, weights, device)
        unknown = [v for v in cfg.views() if v not in ("full_frame", "hand_crop")]
        if unknown:
            raise PredictError(f"the run reads views {unknown} made by another encoder; predict "
                               "embeds full_frame and hand_crop only")
        if bool(classes) == bool(vocab):
            raise PredictError('give exactly one of --classes "a,b,c" or --vocab CACHE:NAME')
        if classes:
            raw = [c.strip() for c in classes.split(",") if c.strip()]
            if not raw:
                raise PredictError("--classes holds no class name")
            names = [normalize_name(c) for c in raw]  # "chopping_board" -> "chopping board"
            try:
                check_prompts("--classes", raw, names, "{}")
                prompt = check_template(ck["fingerprints"]["vocab"].get("prompt", "{}"),
                                        f"{run_dir}: the run's recorded vocabulary")
            except CacheError as e:
                raise PredictError(str(e)) from None
            w = (None if cfg.record.tower else
                 clip_embed.class_text(enc, names, prompt))
        else:
            cache_dir, _, name = vocab.rpartition(":")
            v = load_vocab(Cache.open(cache_dir), name)
            names, w = v.names, v.embeddings
        self.w = text_input(cfg, names, w, run_tower(cfg, ck, device), device)  # [C, D] or ids
        self.net, self.cfg, self.ck, self.enc, self.names = net, cfg, ck, enc, names
        self.boxes, self.top_k = boxes, top_k

    def __call__(self, clip: Path, start: float | None = None, end: float | None = None,
                 fps: float | None = None) -> dict:
        cfg, ck = self.cfg, self.ck
        s = ck["fingerprints"]["views"][cfg.model.classified_view].get("sampling", {})
        crop = (ck["fingerprints"]["views"].get("hand_crop") or {}).get("crop") or {}
        feats, frames, notes, span = clip_embed.embed_clip(  # the run's cache's sampling and crops
            clip, self.enc, cfg.views(), clip_embed.ClipSpan(start, end, fps), self.boxes,
            clip_embed.clip_settings(s, crop))
        try:
            scores = score_clip(self.net, cfg, feats, self.w, frames, span)
        except ValueError as e:
            raise PredictError(str(e)) from None
        order = np.argsort(-scores, kind="stable")[:self.top_k]
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        top = [{"class": self.names[i], "score": float(scores[i]), "prob": float(probs[i])}
               for i in order]
        return {"top": top, "frames": len(frames), "scored": cfg.frames,
                "span": [int(span[0]), int(span[1]) - 1], "notes": notes + self.enc.warnings,
                "method": cfg.method}


def read_clip_list(path: Path) -> list[dict]:
    """A CSV of clips: a ``clip`` column (a video or frame folder), optional ``start``, ``end``
    (seconds) and ``fps``; errors name the file and row."""
    import csv
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "clip" not in reader.fieldnames:
            raise PredictError(f"{path}: a clip list needs a 'clip' column (and optionally "
                               "start, end, fps)")
        for i, r in enumerate(reader, start=2):
            try:
                nums = {k: float(r[k]) if r.get(k) else None for k in ("start", "end", "fps")}
            except ValueError:
                nums = None  # not numbers
            if nums is None or nums["fps"] == 0 or any(
                    v is not None and not (math.isfinite(v) and v >= 0) for v in nums.values()):
                raise PredictError(f"{path}: row {i}: start, end and fps must be finite numbers "
                                   ">= 0 (fps > 0)")
            rows.append({"clip": Path(r["clip"]), **nums})
    return rows

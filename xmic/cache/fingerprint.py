"""Fingerprints: what produced a view's or a vocabulary's embeddings.

Inputs: the model identity (name, weights sha256, open_clip/torch versions, QuickGELU), precision,
preprocessing, crop rule, frame sampling (views) or prompt (vocabularies). Outputs: a plain JSON
dict, its short id (sha256 of the canonical JSON), and a readable diff between two fingerprints.
A cache keeps one fingerprint per view and per vocabulary and refuses shards that differ.
"""
from __future__ import annotations

import hashlib

from xmic.cache.paths import CacheError
from xmic.files.json_files import canonical_json

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

VIEW_KEYS = ("model", "precision", "preprocess", "crop", "sampling")
MODEL_KEYS = ("name", "weights_sha256", "open_clip_version", "torch_version", "quick_gelu")


def model_identity(name: str, weights_sha256: str, open_clip_version: str, torch_version: str,
                   quick_gelu: bool) -> dict:
    return {"name": name, "weights_sha256": weights_sha256,
            "open_clip_version": open_clip_version, "torch_version": torch_version,
            "quick_gelu": bool(quick_gelu)}


def clip_preprocess(size: int = 224, interpolation: str = "bicubic",
                    mean=CLIP_MEAN, std=CLIP_STD, resize: str = "shortest-side+center-crop") -> dict:
    return {"size": int(size), "interpolation": interpolation, "mean": [float(x) for x in mean],
            "std": [float(x) for x in std], "resize": resize}


# 2: hands score > hand_score, paired in every state but NO_CONTACT (EPIC-100 hand-object library);
# 1 (before): hands score >= hand_score, paired only in PORTABLE/STATIONARY_OBJECT states.
CROP_RULE_VERSION = 2
# crop-rule keys each dataset's cache sets for itself: a run trained on one dataset's crops
# scores another's made with other values (the feature space is the same)
PER_DATASET_CROP = ("boxes", "hand_score", "object_score", "min_box_px", "frame_keys", "pairing")


def hand_crop_rule(hand_score: float = 0.8, object_score: float = 0.01, min_box_px: float = 1.0,
                   boxes: str | None = None, frame_keys: str | None = None,
                   pairing: str | None = None) -> dict:
    """The crop rule of a hand-crop view; ``boxes`` names the box source's kind (EPIC-100 or
    100DOH detections, a box table, an X-MIC box pickle) when it is known; ``frame_keys``, where trimmed
    clips' pickles count from 0, how they number frames (``clip``, or ``clip+video``);
    ``pairing``, where a source pairs otherwise than the EPIC-100 library, how it does."""
    out = {"rule": "union(hands>hand_score, objects>=object_score of hands in contact); "
                    "full frame if none",
            "version": CROP_RULE_VERSION, "hand_score": float(hand_score),
            "object_score": float(object_score), "min_box_px": float(min_box_px)}
    if boxes is not None:
        out["boxes"] = boxes
    if frame_keys is not None:
        out["frame_keys"] = frame_keys
    if pairing is not None:
        out["pairing"] = pairing
    return out


def view_fingerprint(model: dict, precision: str, preprocess: dict, crop: dict | None,
                     sampling: dict, **extra) -> dict:
    fp = {"model": dict(model), "precision": precision, "preprocess": dict(preprocess),
          "crop": None if crop is None else dict(crop), "sampling": dict(sampling)}
    fp.update(extra)
    check_view_fingerprint(fp, "fingerprint")
    return fp


def vocab_fingerprint(model: dict, precision: str, prompt: str, **extra) -> dict:
    fp = {"model": dict(model), "precision": precision, "prompt": prompt}
    fp.update(extra)
    return fp


def check_view_fingerprint(fp: dict, where: str) -> None:
    if not isinstance(fp, dict):
        raise CacheError(f"{where}: fingerprint must be a JSON object")
    missing = [k for k in VIEW_KEYS if k not in fp]
    if missing:
        raise CacheError(f"{where}: fingerprint lacks {missing}")
    if not isinstance(fp["model"], dict) or any(k not in fp["model"] for k in MODEL_KEYS):
        raise CacheError(f"{where}: fingerprint.model must hold {list(MODEL_KEYS)}")


def fingerprint_id(fp: dict) -> str:
    return hashlib.sha256(canonical_json(fp).encode()).hexdigest()[:16]


def diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Lines ``key: A != B`` for every leaf where two fingerprints differ."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} != {vb!r}")
    return out


def same_model(a: dict, b: dict) -> bool:
    """Two fingerprints come from the same model (name, weights, QuickGELU)."""
    keys = ("name", "weights_sha256", "quick_gelu")
    return all(a["model"].get(k) == b["model"].get(k) for k in keys)

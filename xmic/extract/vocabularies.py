"""Class names into vocabularies: ``xmic extract text``.

Input: a planned cache (its ``extract_plan.json`` holds each label's class list) and an
``ExtractConfig`` (model, weights, the X-MIC and zero-shot prompts). Output: per label the
vocabularies ``LABEL`` (bare class names) and ``LABEL.photo`` ("a photo of a {}"), or with
templates one ``LABEL.SET`` (a prompt ensemble, ``extract.templates``), each class
named by its dataset's released rule (``released``: as X-MIC's code builds the vocabulary, e.g.
EGTEA's ``[''] + names``, an empty-prompt class before label 0, recorded in the vocabulary); a vocabulary in which two classes share a prompt is refused
before anything is encoded. ``image_model_settings`` reads the model and weights that made the
cache's image views (their shard markers), the defaults of ``xmic extract text``; class names
encoded by a model that made none of the views are refused before anything is written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xmic.cache import Cache
from xmic.cache import fingerprint as F
from xmic.cache.datasets import dataset, prompt_names
from xmic.cache.vocab import add_vocab, check_prompts
from xmic.config import XmicError
from xmic.extract.clip_embed import class_text
from xmic.extract.config import ExtractConfig
from xmic.extract.plan_record import ExtractPlan
from xmic.extract.planning import PlanError


IMAGE_SETTINGS = ("model", "weights", "seed", "precision")
CLASSIFIED = ("hand_crop", "full_frame")  # views read first for the image model


def image_model_settings(cache_dir: Path) -> dict:
    """``ExtractConfig`` fields (model, weights, seed, precision) of the extraction that made
    the cache's image views, read from a committed shard's marker (``hand_crop`` or
    ``full_frame`` first); {} when no view is committed or the cache was imported."""
    try:
        cache = Cache.open(cache_dir)
        views = sorted(cache.views(), key=lambda v: (v not in CLASSIFIED, v))
    except (XmicError, OSError):
        return {}
    for v in views:
        done = sorted(cache.committed(v))
        if done:
            producer = cache.marker(v, done[0]).get("config", {}).get("producer", {})
            if producer.get("model"):
                return {k: producer[k] for k in IMAGE_SETTINGS if k in producer}
    return {}


def check_text_model(cache, identity: dict) -> None:
    """Refuse class names encoded by a model that made none of the cache's image views: they
    would be scored against features of another space."""
    views = cache.views()
    if not views or any(F.same_model(rec["fingerprint"], {"model": identity})
                        for rec in views.values()):
        return
    def named(model: dict) -> str:
        return f"{model['name']} (weights {str(model.get('weights_sha256'))[:16]})"
    made: dict[str, list[str]] = {}
    for v, rec in views.items():
        made.setdefault(named(rec["fingerprint"]["model"]), []).append(v)
    theirs = "; ".join(f"{m}: {', '.join(vs)}" for m, vs in made.items())
    raise PlanError(f"{cache.root}: class names would be encoded by {named(identity)}, but the "
                    f"image views were made by {theirs}; run `xmic extract text {cache.root}` "
                    "without --model/--weights to use the views' own model and weights")


def ensemble_text(enc, names: list[str], templates) -> np.ndarray:
    """[C, D] class embeddings of a template ensemble, as open_clip's
    ``build_zero_shot_classifier`` makes them: each template's embeddings normalised, averaged
    over the templates, normalised again."""
    mean = np.zeros((len(names), 0), np.float64)
    for i, t in enumerate(templates):
        e = class_text(enc, names, t).astype(np.float64)                     # [C, D]
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        mean = e if i == 0 else mean + e
    mean /= len(templates)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def extract_text(cache_dir: Path, cfg: ExtractConfig, labels=("noun", "verb"), encoder=None,
                 released: bool = False, templates: tuple | None = None) -> dict:
    """Vocabulary name -> class count of every vocabulary written, and ``warnings``: the
    encoder's (random weights, precision) for the caller to show. ``released``: the dataset's
    released vocabulary (its extra classes before label 0), refused where it has none.
    ``templates``: ``(name, templates)`` of ``extract.templates``: instead of the bare and photo
    vocabularies, one ``LABEL.NAME`` per label, the template ensemble (``ensemble_text``),
    recorded with its templates."""
    from xmic.towers.encoders import load_encoder
    from xmic.towers.text_tower import tower_source
    cache = Cache.open(cache_dir)
    meta = ExtractPlan.load(cache.root)
    prefix = list(dataset(cache.dataset).released_prefix) if released else []
    if released and not prefix:
        raise PlanError(f"{cache.root}: X-MIC's released {cache.dataset} vocabulary is its class "
                        "list as it is; only EGTEA's adds a class (an empty prompt before label "
                        "0): drop --released-vocabulary")
    enc = encoder or load_encoder(cfg.model, cfg.weights, cfg.device, cfg.precision, cfg.seed)
    check_text_model(cache, enc.identity)
    out = {}
    for label in labels:
        classes = meta.classes.get(label)
        if not classes:
            raise PlanError(f"{cache.root}: no {label} classes in the extraction plan")
        classes = prefix + list(classes)
        names = prompt_names(cache.dataset, classes)  # the dataset's released naming rule
        kind = ({"vocabulary": f"X-MIC's released vocabulary: {prefix!r} + {len(classes) - len(prefix)}"
                 " names (classes before label 0 that are never a label but can win the argmax)"}
                if prefix else {})
        source = {"classes": "extract_plan.json", "names": f"{cache.dataset} naming rule",
                  **kind, **tower_source(cfg.model, cfg.weights)}
        if templates is not None:
            set_name, group = templates
            name = f"{label}.{set_name}"
            for t in group:
                check_prompts(name, classes, names, t)  # before encoding anything
            emb = ensemble_text(enc, names, group)  # [C, D], unit rows
            add_vocab(cache, name, classes, emb, group[0],
                      F.vocab_fingerprint(enc.identity, enc.precision, group[0],
                                          templates=list(group)), replace=True,
                      source={**source, "templates": set_name, "template_count": len(group),
                              "ensemble": "mean of unit embeddings over templates, unit norm"},
                      names=names, label_offset=len(prefix))
            out[name] = len(classes)
            continue
        for name, template in ((label, cfg.prompt), (f"{label}.photo", cfg.zeroshot_prompt)):
            check_prompts(name, classes, names, template)  # before encoding anything
            emb = class_text(enc, names, template)  # [C, D]
            add_vocab(cache, name, classes, emb, template,
                      F.vocab_fingerprint(enc.identity, enc.precision, template), replace=True,
                      source=source, names=names, label_offset=len(prefix))
            out[name] = len(classes)
    return {"vocabularies": out, "warnings": list(enc.warnings)}

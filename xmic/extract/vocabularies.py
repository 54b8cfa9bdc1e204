"""Class names into vocabularies: ``xmic extract text``.

Input: a planned cache (its ``extract_plan.json`` holds each label's class list) and an
``ExtractConfig`` (model, weights, the X-MIC and zero-shot prompts). Output: per label the
vocabularies ``LABEL`` (bare class names) and ``LABEL.photo`` ("a photo of a {}"), each class
named by its dataset's released rule; a vocabulary in which two classes share a prompt is refused
before anything is encoded.
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache import Cache
from xmic.cache import fingerprint as F
from xmic.cache.datasets import prompt_names
from xmic.cache.paths import PLAN_FILE
from xmic.cache.vocab import add_vocab, check_prompts
from xmic.extract.clip_embed import class_text
from xmic.extract.config import ExtractConfig
from xmic.extract.planning import PlanError
from xmic.files.names import read_json


def extract_text(cache_dir: Path, cfg: ExtractConfig, labels=("noun", "verb"), encoder=None) -> dict:
    """Vocabulary name -> class count of every vocabulary written, and ``warnings``: the
    encoder's (random weights, precision) for the caller to show."""
    from xmic.towers.encoders import load_encoder
    from xmic.towers.text_tower import tower_source
    cache = Cache.open(cache_dir)
    meta = read_json(cache.root / PLAN_FILE, "extraction plan (run `xmic extract plan` first)")
    enc = encoder or load_encoder(cfg.model, cfg.weights, cfg.device, cfg.precision, cfg.seed)
    out = {}
    for label in labels:
        classes = meta["classes"].get(label)
        if not classes:
            raise PlanError(f"{cache.root}: no {label} classes in the extraction plan")
        names = prompt_names(cache.dataset, classes)  # the dataset's released naming rule
        for name, template in ((label, cfg.prompt), (f"{label}.photo", cfg.zeroshot_prompt)):
            check_prompts(name, classes, names, template)  # before encoding anything
            emb = class_text(enc, names, template)  # [C, D]
            add_vocab(cache, name, classes, emb, template,
                      F.vocab_fingerprint(enc.identity, enc.precision, template), replace=True,
                      source={"classes": "extract_plan.json",
                              "names": f"{cache.dataset} naming rule",
                              **tower_source(cfg.model, cfg.weights)}, names=names)
            out[name] = len(classes)
    return {"vocabularies": out, "warnings": list(enc.warnings)}

"""The dataset card of a published cache: what it is, computed from its files.

Input: a ``Cache``. Output: ``card_fields`` (JSON-safe: dataset and its terms, splits with
segment counts, views with width, dtype, frames, model name, weights sha256, QuickGELU,
precision, sampling rule, crop rule, box source and fallback share, vocabularies with class
counts, prompts and a sha256 of their class names), the ``README.md`` text (a YAML header that
Hugging Face reads, holding these fields under ``xmic``, then tables and the class names), and
``read_card`` (the header back, through ``yaml.safe_load``). Fetch recomputes the fields from the
files and refuses a card that says anything else.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from xmic.cache.cache_folder import Cache
from xmic.cache.datasets import DATASETS
from xmic.cache.fingerprint import fingerprint_id
from xmic.cache.info import info
from xmic.cache.paths import PLAN_FILE, CacheError, read_cache_json
from xmic.cache.vocab import load_vocab, vocab_names

CARD = "README.md"
CARD_LIMIT = 4 << 20  # bytes of a card fetch reads


EXTRACTION = "extraction.json"  # a published cache's extraction record, without local paths
# keys of a split in the extraction plan's file (extract.plan_record) a published cache keeps
RECORDED = ("dataset", "views", "boxes_format", "boxes_frame_keys", "settings")


def extraction_record(cache: Cache) -> dict:
    """Split -> how extraction made it (views, box format, frame numbering, settings), from the
    extraction plan (its local paths left out) or, in a published cache, ``extraction.json``."""
    for name, what in ((PLAN_FILE, "extraction plan"), (EXTRACTION, "extraction record")):
        path = cache.root / name
        if path.is_file():
            splits = read_cache_json(path, what).get("splits") or {}
            return {s: {k: v for k, v in (p or {}).items() if k in RECORDED}
                    for s, p in sorted(splits.items())}
    return {}


def card_fields(cache: Cache) -> dict:
    """What the card states about a cache, computed from its files (the same on both ends)."""
    d = info(cache)
    record = DATASETS.get(cache.dataset)
    views = {}
    for name, v in sorted(d["views"].items()):
        fp, model = v["fingerprint"], v["fingerprint"].get("model") or {}
        views[name] = {
            "dim": v["dim"], "dtype": v["dtype"], "frames": v["frames"],
            "fingerprint_id": v["fingerprint_id"], "model": model.get("name"),
            "weights_sha256": model.get("weights_sha256"), "quick_gelu": model.get("quick_gelu"),
            "precision": fp.get("precision"), "sampling": fp.get("sampling"),
            "crop": fp.get("crop"),
            "fallback_share": {s: round(f["share"], 4) for s, f in
                               sorted((v.get("fallbacks") or {}).items())
                               if f.get("share") is not None} or None}
    vocabs = {}
    for name in vocab_names(cache):
        voc = load_vocab(cache, name)
        templates = voc.fingerprint.get("templates")
        vocabs[name] = {"classes": len(voc.classes), "dim": voc.dim,
                        "prompt": voc.prompt if not templates else None,
                        **({"templates": list(templates)} if templates else {}),
                        "fingerprint_id": fingerprint_id(voc.fingerprint),
                        "names_sha256": hashlib.sha256(
                            "\n".join(voc.classes).encode()).hexdigest()}
    fields = {"format": "xmic-cache", "dataset": cache.dataset,
              "terms": record.terms if record else None, "backend": cache.backend,
              "dtype": d["dtype"], "splits": d["splits"], "views": views,
              "box_source": {s: p.get("boxes_format") for s, p in extraction_record(cache).items()},
              "vocabularies": vocabs}
    return json.loads(json.dumps(fields))  # what YAML gives back: lists, plain numbers


def card_text(cache: Cache, fields: dict, license_id: str | None = None) -> str:
    """``README.md``: the YAML header (Hugging Face metadata plus ``xmic``), then the tables."""
    record = DATASETS.get(cache.dataset)
    title = record.title if record else cache.dataset
    header = {"license": license_id or (record.license if record else "other"),
              "pretty_name": f"xmic feature cache: {title}",
              "tags": ["xmic", "egocentric", "video", "clip-features"],
              "task_categories": ["video-classification"], "xmic": fields}
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             f"# xmic feature cache: {title}", "",
             f"Frozen CLIP embeddings of {title} segments, as `xmic extract` writes them "
             f"({fields['backend']} shards, {fields['dtype']}). Terms: {fields['terms']}.", "",
             "| split | segments | ok | failed | pending |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {v['segments']} | {v['ok']} | {v['failed']} | {v['pending']} |"
              for s, v in fields["splits"].items()]
    lines += ["", "| view | D | dtype | frames | model | weights sha256 | sampling | crop "
              "fallback share |", "|---|---|---|---|---|---|---|---|"]
    for name, v in fields["views"].items():
        share = ", ".join(f"{s} {100 * x:.1f}%" for s, x in (v["fallback_share"] or {}).items())
        lines.append(f"| {name} | {v['dim']} | {v['dtype']} | {v['frames']} | {v['model']} | "
                     f"`{str(v['weights_sha256'])[:16]}` | {json.dumps(v['sampling'])} | "
                     f"{share or '–'} |")
    lines += ["", "Use it with xmic (every file is checked against `manifest.json` first):", "",
              "```", "xmic cache fetch hf-hub:ORG/REPO caches/NAME   # or a folder, or file://",
              "xmic train --cache hf-hub:ORG/REPO ...", "```", "",
              "or read it without xmic: `segments.parquet` / `index.parquet` with pyarrow, a "
              "shard's `data.zarr` with zarr or `data.h5` with h5py (rows of a segment: its "
              "`VIEW__offset` and `VIEW__count` in the index).", ""]
    for name in vocab_names(cache):
        voc = load_vocab(cache, name)
        templates = voc.fingerprint.get("templates")
        how = (f"an ensemble of {len(templates)} templates" if templates
               else f"prompt {voc.prompt!r}")
        lines += [f"<details><summary>vocabulary {name}: {len(voc.classes)} classes, "
                  f"{how}</summary>", "", ", ".join(voc.classes), "", "</details>", ""]
    return "\n".join(lines)


def read_card(path: Path) -> dict:
    """The ``xmic`` fields of a card's YAML header (safe loader, bounded size)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(CARD_LIMIT + 1)
    except OSError as e:
        raise CacheError(f"{path}: cannot read the card ({e.strerror})") from None
    text = raw.decode("utf-8", "replace")
    if len(raw) > CARD_LIMIT or not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise CacheError(f"{path}: not a card with a YAML header (--- ... ---)")
    try:
        header = yaml.safe_load(text[4:text.index("\n---\n", 4)])
    except yaml.YAMLError as e:
        raise CacheError(f"{path}: the card's header is not YAML ({e})") from None
    if not isinstance(header, dict) or not isinstance(header.get("xmic"), dict):
        raise CacheError(f"{path}: the card's header has no xmic fields")
    return header["xmic"]


def card_differences(stated: dict, found: dict, prefix: str = "") -> list[str]:
    """Where a card's fields differ from the fields computed from the files (dotted keys)."""
    out = []
    for k in sorted(set(stated) | set(found)):
        a, b = stated.get(k), found.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += card_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: card says {json.dumps(a)}, files say {json.dumps(b)}")
    return out

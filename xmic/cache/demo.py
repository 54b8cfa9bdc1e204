"""The cache stage's demo: generated X-MIC inputs -> import -> info -> verify -> convert -> load.

Input: an output folder, a backend, a size. Output (in the folder): ``inputs/`` (generated EPIC
annotation CSVs, class lists and X-MIC feature pickles), ``epic-cache`` (the chosen backend),
``epic-cache-<other>`` (converted), and a printed account of each step. Raises on any failed
check, so a green run means the cache round-trips.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from xmic.cache import Cache, CacheConfig, load_split
from xmic.cache import fingerprint as F
from xmic.cache.annotations import read_class_list, read_epic
from xmic.cache.layout import CacheError
from xmic.cache.legacy import import_split
from xmic.cache.ops import convert, format_info, info
from xmic.cache.synthetic import make_xmic_inputs
from xmic.cache.verify import verify
from xmic.cache.vocab import add_vocab


def _fingerprint(view: str) -> dict:
    model = F.model_identity("ViT-B-16-quickgelu", "openai", "unknown (imported)",
                             "unknown (imported)", True)
    return F.view_fingerprint(model, "unknown (imported)", F.clip_preprocess(),
                              F.hand_crop_rule() if view == "hand_crop" else None,
                              {"policy": "all", "source": "xmic-pickle"})


def run_demo(out: Path, backend: str = "zarr", segments: int = 60, echo=print) -> dict:
    t0 = time.time()
    out = Path(out)
    other = "hdf5" if backend == "zarr" else "zarr"
    src, dst = out / "epic-cache", out / f"epic-cache-{other}"
    echo("xmic demo (cache stage): the features are generated class prototypes plus noise, not a "
         "model's output; extraction with real CLIP weights comes with `xmic extract`.")
    files = make_xmic_inputs(out / "inputs", "epic", ("train", "validation"), segments)
    echo(f"[1/5] generated EPIC-100 style annotations and X-MIC feature pickles in {out / 'inputs'}")
    cache = Cache.create(src, "epic", CacheConfig(backend=backend, shard_segments=16))
    for split, sf in files["splits"].items():
        segs, _ = read_epic(sf["annotations"], split)
        pickles = {v: sf[v] for v in ("full_frame", "hand_crop")}
        s = import_split(cache, segs, split, pickles, {v: _fingerprint(v) for v in pickles})
        missing = {v: d["missing_segments"] for v, d in s["views"].items()}
        echo(f"[2/5] imported {split}: {s['segments']} segments, missing from pickles (recorded as "
             f"failed rows): {missing}")
    model = F.model_identity("ViT-B-16-quickgelu", "openai", "unknown (imported)",
                             "unknown (imported)", True)
    for kind in ("noun", "verb"):
        names = read_class_list(files[f"{kind}_classes"])
        emb = np.load(files[f"{kind}_text"])
        if kind not in [p.name for p in (src / "vocab").glob("*")]:
            add_vocab(cache, kind, names, emb, "{}", F.vocab_fingerprint(model, "unknown", "{}"))
    echo("[3/5] " + format_info(info(cache)).replace("\n", "\n      "))
    problems = verify(cache, deep=True)
    if problems:
        raise CacheError(f"verify --deep failed on {src}: " + "; ".join(problems[:5]))
    echo(f"[4/5] verify --deep: ok ({src})")
    converted = convert(cache, dst, other)
    problems = verify(converted, deep=True)
    if problems:
        raise CacheError(f"verify --deep failed on {dst}: " + "; ".join(problems[:5]))
    a = load_split(cache, ["hand_crop", "full_frame"], "train")
    b = load_split(converted, ["hand_crop", "full_frame"], "train")
    for v in a.views:
        if not np.array_equal(a.views[v].features, b.views[v].features):
            raise CacheError(f"view {v} differs after conversion to {other}")
    fa = a.views["hand_crop"]
    echo(f"[5/5] converted to {other} and verified; loaded train: {len(a.segment_ids)} segments, "
         f"hand_crop features {tuple(fa.features.shape)} {fa.features.dtype} + offsets "
         f"{tuple(fa.offsets.shape)}, skipped {a.skipped}; identical in both backends")
    echo(f"done in {time.time() - t0:.1f}s. Try: xmic cache info {src}")
    return {"cache": src, "converted": dst, "seconds": time.time() - t0}

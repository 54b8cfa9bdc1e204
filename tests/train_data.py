"""Small caches for training tests, written through the real cache API."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import fingerprint
from xmic.cache import Cache, CacheConfig, ShardWriter
from xmic.cache import fingerprint as F
from xmic.cache.index import make_plan
from xmic.cache.vocab import add_vocab


def vocab_fp(prompt: str = "{}", name: str = "ViT-B-16-quickgelu", model: dict | None = None) -> dict:
    return F.vocab_fingerprint(model or fingerprint(name)["model"], "fp32", prompt)


def view_fp(crop: bool, model: dict | None) -> dict:
    fp = fingerprint(crop=crop)
    return {**fp, "model": dict(model)} if model else fp


def make_train_cache(root: Path, n: int = 48, classes: int = 4, dim: int = 32, videos: int = 8,
                     seed: int = 0, mode: str = "random", splits=("train",), frames=(5, 40),
                     views=("hand_crop", "full_frame"), view_dims: dict | None = None,
                     noise: float = 1.5, dataset: str = "epic",
                     class_names: list[str] | None = None, model: dict | None = None,
                     text=None, vocab_source: dict | None = None) -> Cache:
    """mode "random": random text, and frames = a random per-segment vector + small noise
    (labels are arbitrary: nothing to transfer, all to fit);
    mode "constant": each segment's frames all equal one noisy class-mean vector.
    ``model``: the model identity of every view and vocabulary (default a made-up one);
    ``text``: the noun vocabulary's embeddings [classes, dim] (default random / the means)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim)).astype(np.float32)
    cache = Cache.create(root, dataset, CacheConfig(dtype="float32", shard_segments=16))
    data = {}
    for split in splits:
        labels = rng.integers(0, classes, n)
        cols = dict(segment_id=[f"{split}_{i}" for i in range(n)], dataset=[dataset] * n,
                    split=[split] * n, video_id=[f"V{i % videos:02d}" for i in range(n)],
                    start_frame=[0] * n, stop_frame=[10] * n, start_sec=[0.0] * n, stop_sec=[1.0] * n,
                    fps=[10.0] * n, verb_id=[int(x) % 2 for x in labels], verb=["v"] * n,
                    noun_id=[int(x) for x in labels], noun=["n"] * n)
        cache.add_plan(make_plan(cols, 16, split))
        for i, sid in enumerate(cols["segment_id"]):
            k = int(rng.integers(*frames))
            seg = {}
            for v in views:
                d = (view_dims or {}).get(v, dim)
                if mode == "constant" and d == dim:
                    vec = means[labels[i]] + rng.standard_normal(dim).astype(np.float32) * noise
                    seg[v] = np.repeat(vec[None], k, 0)
                else:
                    base = rng.standard_normal(d).astype(np.float32)
                    seg[v] = base + 0.2 * rng.standard_normal((k, d)).astype(np.float32)
            data[sid] = seg
    for v in views:
        d = (view_dims or {}).get(v, dim)
        for shard in cache.shards():
            with ShardWriter(cache, v, shard, d, view_fp(v == "hand_crop", model)) as w:
                for sid in w.segment_ids:
                    a = data[sid][v]
                    w.add(sid, a, range(len(a)))
                w.commit()
    if text is None:
        text = means if mode == "constant" else rng.standard_normal((classes, dim)).astype(np.float32)
    names = class_names or [f"class{c}" for c in range(classes)]
    src = vocab_source or {}
    add_vocab(cache, "noun", names, text, "{}", vocab_fp(model=model), source=src)
    add_vocab(cache, "noun.photo", names, text, "a photo of a {}",
              vocab_fp("a photo of a {}", model=model), source=src)
    verbs = rng.standard_normal((2, dim))
    add_vocab(cache, "verb", ["v0", "v1"], verbs, "{}", vocab_fp(model=model), source=src)
    add_vocab(cache, "verb.photo", ["v0", "v1"], verbs, "a photo of a {}",
              vocab_fp("a photo of a {}", model=model), source=src)
    cache.means = means
    return cache


def tiny_tower_identity(seed: int = 0) -> dict:
    """The identity of the tiny test config with seeded random weights (what its vocabularies
    record), without loading it."""
    import open_clip
    import torch
    return F.model_identity("xmic-tiny-quickgelu", f"random-seed-{seed}", open_clip.__version__,
                            torch.__version__, True)


NOUNS = ["knife", "spoon", "door", "pan", "tap", "plate"]


def make_prompt_cache(root: Path, n: int = 48, classes: int = 4, seed: int = 0, names=None,
                      dataset: str = "epic", **kw) -> Cache:
    """A cache whose vocabularies were made by the tiny tower (random weights, seed 0), as
    ``xmic extract text`` records them: prompt methods can rebuild the tower from it."""
    from extract_data import TINY
    from xmic.towers.text_tower import load_text_tower
    names = list(names or NOUNS[:classes])
    fp = vocab_fp(model=tiny_tower_identity())
    src = {"model": str(TINY), "weights": "random"}
    text = load_text_tower(fp, src, "cpu").encode_texts(names).numpy()  # the tower's own
    return make_train_cache(root, n=n, classes=len(names), dim=32, seed=seed, mode="constant",
                            class_names=names, dataset=dataset, model=tiny_tower_identity(),
                            text=text, vocab_source=src, **kw)

"""Small caches for training tests, written through the real cache API."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import fingerprint
from xmic.cache import Cache, CacheConfig, ShardWriter
from xmic.cache import fingerprint as F
from xmic.cache.index import make_plan
from xmic.cache.vocab import add_vocab


def vocab_fp(prompt: str = "{}", name: str = "ViT-B-16-quickgelu") -> dict:
    return F.vocab_fingerprint(fingerprint(name)["model"], "fp32", prompt)


def make_train_cache(root: Path, n: int = 48, classes: int = 4, dim: int = 32, videos: int = 8,
                     seed: int = 0, mode: str = "random", splits=("train",), frames=(5, 40),
                     views=("hand_crop", "full_frame"), view_dims: dict | None = None,
                     noise: float = 1.5, dataset: str = "epic",
                     class_names: list[str] | None = None) -> Cache:
    """mode "random": random text, and frames = a random per-segment vector + small noise
    (labels are arbitrary: nothing to transfer, all to fit);
    mode "constant": each segment's frames all equal one noisy class-mean vector."""
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
            with ShardWriter(cache, v, shard, d, fingerprint(crop=v == "hand_crop")) as w:
                for sid in w.segment_ids:
                    a = data[sid][v]
                    w.add(sid, a, range(len(a)))
                w.commit()
    text = means if mode == "constant" else rng.standard_normal((classes, dim)).astype(np.float32)
    names = class_names or [f"class{c}" for c in range(classes)]
    add_vocab(cache, "noun", names, text, "{}", vocab_fp())
    add_vocab(cache, "noun.photo", names, text, "a photo of a {}", vocab_fp("a photo of a {}"))
    add_vocab(cache, "verb", ["v0", "v1"], rng.standard_normal((2, dim)), "{}", vocab_fp())
    cache.means = means
    return cache

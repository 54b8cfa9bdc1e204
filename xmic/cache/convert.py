"""``convert``: a cache into the other backend, same content.

Inputs: a ``Cache``, an output folder outside it and a backend. Output: a new cache holding the
same plan, rows, data and vocabularies, written through ``ShardWriter`` (so atomically, shard by
shard); shards already converted are skipped, so an interrupted convert resumes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from xmic.cache.backends import read_array
from xmic.cache.cache_folder import Cache
from xmic.cache.paths import CacheError
from xmic.cache.reader import check_data_files
from xmic.cache.vocab import add_vocab, load_vocab, vocab_names
from xmic.cache.writer import ShardWriter


def convert(src: Cache, out: str | Path, backend: str, progress=None) -> Cache:
    config = dataclasses.replace(src.config, backend=backend)
    target = Path(out).resolve()
    if src.holds(target):
        raise CacheError(f"cannot convert {src.root} into {target}: the output lies inside the "
                         "cache it converts; choose a folder outside it")
    dst = Cache.create(out, src.dataset, config)
    dst.add_plan(src.plan())
    for view, rec in src.views().items():
        done = dst.committed(view)  # one listing of the view, not one per shard
        for shard in sorted(src.committed(view)):
            if shard in done:
                continue
            m = src.marker(view, shard)
            arr = read_array(m["backend"], check_data_files(src, view, shard, m))  # [rows, D]
            rows = src.shard_rows(view, shard)
            with ShardWriter(dst, view, shard, rec["dim"], rec["fingerprint"],
                             producer_config=m.get("config", {}).get("producer", {}),
                             provenance={**m.get("provenance", {}),
                                         "converted_from": str(src.root)}) as w:
                for sid, off, cnt, fi, st, err in zip(*(rows[c].to_pylist() for c in rows.column_names)):
                    if st == "ok":
                        w.add(sid, arr[off:off + cnt], fi)
                    else:
                        w.fail(sid, err)
                w.commit()
            if progress:
                progress(view, shard)
    for name in vocab_names(src):
        v = load_vocab(src, name)
        existing = vocab_names(dst)
        if name in existing and np.array_equal(load_vocab(dst, name).embeddings, v.embeddings):
            continue
        add_vocab(dst, name, v.classes, v.embeddings, v.prompt, v.fingerprint, replace=True,
                  source=v.source)
    dst.index(refresh=True)
    return dst

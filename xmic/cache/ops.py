"""Whole-cache operations: ``info`` (a summary) and ``convert`` (the other backend).

Inputs: a ``Cache`` (and for convert an output folder and a backend). Outputs: ``info`` returns a
JSON-safe dict (dataset, splits with segment counts by status, views with width, dtype, shard
counts done/pending/failed/running, bytes, fingerprints, vocabularies); ``convert`` writes the
same plan, rows, data and vocabularies into a new cache through ``ShardWriter``, skipping shards
already converted, so an interrupted convert resumes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from xmic.cache.backends import read_array
from xmic.cache.fingerprint import fingerprint_id
from xmic.cache.layout import CacheError
from xmic.cache.reader import check_data_files
from xmic.cache.store import Cache
from xmic.cache.vocab import add_vocab, load_vocab, vocab_names
from xmic.cache.writer import ShardWriter


def info(cache: Cache) -> dict:
    idx = cache.index()
    splits = {}
    for split in cache.splits():
        sub = idx.filter(pc.equal(idx["split"], split))
        st = sub["status"].to_pylist()
        splits[split] = {"segments": sub.num_rows, "shards": len(cache.shards(split)),
                         **{s: st.count(s) for s in ("ok", "failed", "pending")}}
    all_shards = cache.shards()
    views = {}
    for view, rec in cache.views().items():
        committed = cache.committed(view)
        states = {"done": 0, "pending": 0, "failed": 0, "running": 0}
        for shard in all_shards:
            states[cache.shard_state(view, shard) if shard not in committed else "done"] += 1
        nbytes = rows = 0
        for shard in committed:
            m = cache.marker(view, shard)
            nbytes += sum(m["files"].values())
            rows += m["rows"]
        views[view] = {"dim": rec["dim"], "dtype": rec["dtype"], "frames": rows, "bytes": nbytes,
                       "shards": states, "fingerprint_id": rec["fingerprint_id"],
                       "fingerprint": rec["fingerprint"]}
    vocabs = {}
    for name in vocab_names(cache):
        v = load_vocab(cache, name)
        vocabs[name] = {"classes": len(v.classes), "dim": v.dim, "prompt": v.prompt,
                        "fingerprint_id": fingerprint_id(v.fingerprint), "fingerprint": v.fingerprint}
    return {"root": str(cache.root), "dataset": cache.dataset, "backend": cache.backend,
            "dtype": cache.config.dtype, "splits": splits, "views": views, "vocabularies": vocabs}


def format_info(d: dict) -> str:
    lines = [f"cache {d['root']}", f"  dataset {d['dataset']}, backend {d['backend']}, dtype {d['dtype']}"]
    for split, s in d["splits"].items():
        lines.append(f"  split {split}: {s['segments']} segments in {s['shards']} shards "
                     f"(ok {s['ok']}, failed {s['failed']}, pending {s['pending']})")
    for view, v in d["views"].items():
        sh = v["shards"]
        lines.append(f"  view {view}: D={v['dim']} {v['dtype']}, {v['frames']} frames, "
                     f"{v['bytes'] / 1e6:.1f} MB, shards done {sh['done']} / pending {sh['pending']}"
                     f" / failed {sh['failed']} / running {sh['running']}, "
                     f"fingerprint {v['fingerprint_id']} ({v['fingerprint']['model']['name']})")
    for name, v in d["vocabularies"].items():
        lines.append(f"  vocabulary {name}: {v['classes']} classes, D={v['dim']}, prompt "
                     f"{v['prompt']!r}, fingerprint {v['fingerprint_id']}")
    if not d["views"]:
        lines.append("  no views yet")
    return "\n".join(lines)


def convert(src: Cache, out: str | Path, backend: str, progress=None) -> Cache:
    config = dataclasses.replace(src.config, backend=backend)
    target = Path(out).resolve()
    if target == src.root or src.root in target.parents:
        raise CacheError(f"cannot convert {src.root} into {target}: the output lies inside the "
                         "cache it converts; choose a folder outside it")
    dst = Cache.create(out, src.dataset, config)
    dst.add_plan(src.plan())
    for view, rec in src.views().items():
        for shard in sorted(src.committed(view)):
            if dst.shard_state(view, shard) == "done":
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
        add_vocab(dst, name, v.classes, v.embeddings, v.prompt, v.fingerprint, replace=True)
    dst.index(refresh=True)
    return dst

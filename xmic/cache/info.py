"""``info``: what a cache holds, as a JSON-safe dict and as text.

Input: a ``Cache``. Output: dataset, backend, splits with segment counts by status, views with
width, dtype, frames, bytes, shard counts done / pending / failed / running (from the same fast
listing as ``xmic slurm status``: ``Cache.shard_states``), fingerprints, for crop views per
split the rows whose crop fell back to the full frame (from the shard markers), and vocabularies.
"""
from __future__ import annotations

import pyarrow.compute as pc

from xmic.cache.cache_folder import Cache
from xmic.cache.fingerprint import fingerprint_id
from xmic.cache.vocab import load_vocab, vocab_names


def info(cache: Cache) -> dict:
    idx = cache.index()
    splits = {}
    for split in cache.splits():
        sub = idx.filter(pc.equal(idx["split"], split))
        st = sub["status"].to_pylist()
        splits[split] = {"segments": sub.num_rows, "shards": len(cache.shards(split)),
                         **{s: st.count(s) for s in ("ok", "failed", "pending")}}
    views = {}
    split_of = {shard: split for split in cache.splits() for shard in cache.shards(split)}
    for view, rec in cache.views().items():
        committed = cache.committed(view)
        states = {"done": 0, "pending": 0, "failed": 0, "running": 0}
        for st in cache.shard_states(view).values():  # the fast path `slurm status` takes
            states[st] += 1
        nbytes = rows = 0
        crop = rec["fingerprint"].get("crop") is not None
        fallbacks: dict[str, dict] = {}
        for shard in committed:
            m = cache.marker(view, shard)
            nbytes += sum(m["files"].values())
            rows += m["rows"]
            if crop:
                _add_fallbacks(fallbacks, split_of.get(shard, "?"), m)
        views[view] = {"dim": rec["dim"], "dtype": rec["dtype"], "frames": rows, "bytes": nbytes,
                       "shards": states, "fingerprint_id": rec["fingerprint_id"],
                       "fingerprint": rec["fingerprint"]}
        if crop:
            views[view]["fallbacks"] = fallbacks
    vocabs = {}
    for name in vocab_names(cache):
        v = load_vocab(cache, name)
        vocabs[name] = {"classes": len(v.classes), "dim": v.dim, "prompt": v.prompt,
                        "templates": len(v.fingerprint.get("templates") or []) or None,
                        "fingerprint_id": fingerprint_id(v.fingerprint), "fingerprint": v.fingerprint,
                        "label_offset": v.label_offset, "vocabulary": v.source.get("vocabulary")}
    return {"root": str(cache.root), "dataset": cache.dataset, "backend": cache.backend,
            "dtype": cache.config.dtype, "splits": splits, "views": views, "vocabularies": vocabs}


def _add_fallbacks(out: dict, split: str, marker: dict) -> None:
    """Add one crop view's shard to its split's count of rows whose crop is the full frame
    (``share`` None while a shard predates the count)."""
    got = out.setdefault(split, {"rows": 0, "fallback_rows": 0, "shards_uncounted": 0})
    fell = marker.get("crop_fallbacks")
    if fell is None:
        got["shards_uncounted"] += 1
    else:
        got["rows"] += marker["rows"]
        got["fallback_rows"] += fell["rows"]
    got["share"] = got["fallback_rows"] / got["rows"] if got["rows"] else None


def fallback_line(split: str, rows: int, fell: int) -> str:
    """How a split's hand crops came out, in words (``extract run`` and ``cache info``)."""
    share = 100 * fell / rows if rows else 0.0
    return (f"{split}: {fell} of {rows} hand-crop frames ({share:.1f}%) fell back to the full "
            "frame (no hand above hand_score, or a box too small)")


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
        for split, f in v.get("fallbacks", {}).items():
            lines.append(f"    {fallback_line(split, f['rows'], f['fallback_rows'])}"
                         + (f"; {f['shards_uncounted']} shard(s) written before fallbacks were "
                            "counted" if f["shards_uncounted"] else ""))
    for name, v in d["vocabularies"].items():
        prompt = (f"an ensemble of {v['templates']} templates" if v.get("templates")
                  else f"prompt {v['prompt']!r}")
        lines.append(f"  vocabulary {name}: {v['classes']} classes, D={v['dim']}, {prompt}, "
                     f"fingerprint {v['fingerprint_id']}"
                     + (f"; {v['vocabulary']}" if v.get("label_offset") else ""))
    if not d["views"]:
        lines.append("  no views yet")
    return "\n".join(lines)

"""Cache I/O benchmark: write and load an EPIC-100-scale synthetic cache on both backends.

Full scale (``--scale 1``) is 67,217 segments x 32 frames x 2 views x 512, float16 (4.4 GB).
Reports, per backend: write MB/s; load MB/s; load time as a ratio to a raw sequential read of
the same data files in the same run (``raw_read_s / load_s``, goal >= 0.5); and the peak RSS the
load adds, as a ratio to the loaded bytes (goal <= 1.5). Loads run in a fresh subprocess so
their peak RSS is their own. Each figure is taken twice: warm (files in the page cache, so the
ratio measures the libraries' CPU cost against a plain read) and cold (page cache dropped before
every read, as on a first load from disk or a network file system; needs root, else skipped).

usage: python bench/cache_io.py [--scale 0.1] [--backends zarr,hdf5] [--modes warm,cold]
                                [--repeats 3] [--workdir DIR] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import drop_page_cache

FULL_SEGMENTS = 67_217
FRAMES, DIM = 32, 512
VIEWS = ("full_frame", "hand_crop")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")



def write_cache(root: Path, backend: str, n: int, shard_segments: int, chunk_rows: int) -> float:
    from xmic.cache import Cache, CacheConfig, ShardWriter
    from xmic.cache import fingerprint as F
    from xmic.cache.index import make_plan
    cache = Cache.create(root, "epic", CacheConfig(backend=backend, shard_segments=shard_segments,
                                                   chunk_rows=chunk_rows))
    cols = dict(segment_id=[f"P{i // 5000:02d}_{i}" for i in range(n)], dataset=["epic"] * n,
                split=["train"] * n, video_id=[f"P{i // 5000:02d}_01" for i in range(n)],
                start_frame=[i * 40 for i in range(n)], stop_frame=[i * 40 + 39 for i in range(n)],
                start_sec=[i * 0.8 for i in range(n)], stop_sec=[i * 0.8 + 0.78 for i in range(n)],
                fps=[50.0] * n, verb_id=[i % 97 for i in range(n)], verb=["take"] * n,
                noun_id=[i % 300 for i in range(n)], noun=["tap"] * n)
    cache.add_plan(make_plan(cols, shard_segments, "train"))
    model = F.model_identity("ViT-B-16-quickgelu", "bench", "3", "2", True)
    fp = F.view_fingerprint(model, "fp16", F.clip_preprocess(), None, {"policy": "all"})
    pool = np.random.default_rng(0).standard_normal((8192 + FRAMES, DIM)).astype(np.float16)
    frame_ids = list(range(FRAMES))
    t0 = time.perf_counter()
    k = 0
    for view in VIEWS:
        for shard in cache.shards():
            with ShardWriter(cache, view, shard, DIM, fp) as w:
                for sid in w.segment_ids:
                    o = (k * 7919) % 8192
                    w.add(sid, pool[o:o + FRAMES], frame_ids)
                    k += 1
                w.commit()
    cache.index(refresh=True)
    return time.perf_counter() - t0


def data_files(root: Path) -> list[Path]:
    out = []
    for p in sorted((root / "views").rglob("*")):
        if p.is_file() and ("data.zarr" in p.parts or p.name == "data.h5"):
            out.append(p)
    return out


def raw_read(files: list[Path]) -> tuple[float, int]:
    """Read every file into one new buffer; allocating it is timed too, as load_split's is.
    Runs in a fresh process (``--raw-child``), like the load, so both pay first-touch costs."""
    total = sum(p.stat().st_size for p in files)
    t0 = time.perf_counter()
    buf = np.empty(total, dtype=np.uint8)
    view = memoryview(buf)
    pos = 0
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(view[pos:pos + (64 << 20)]):
                pos += n
    return time.perf_counter() - t0, total


def load_child(root: str) -> dict:
    import importlib
    for mod in ("h5py", "zarr"):  # import cost is start-up, not the read path
        importlib.import_module(mod)

    from xmic.cache import Cache, load_split
    cache = Cache.open(root)
    cache.index()
    base = rss_bytes()
    t0 = time.perf_counter()
    data = load_split(cache, list(VIEWS), "train")
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    loaded = sum(v.features.nbytes + v.offsets.nbytes for v in data.views.values())
    return {"load_s": dt, "loaded_bytes": loaded, "rss_before": base, "peak_rss": peak,
            "segments": len(data.segment_ids)}


def child(mode: str, root: Path) -> dict:
    cp = subprocess.run([sys.executable, __file__, mode, str(root)], capture_output=True,
                        text=True, check=True)
    return json.loads(cp.stdout.strip().splitlines()[-1])


def read_figures(root: Path, repeats: int, cold: bool) -> dict | None:
    raws, loads = [], []
    for _ in range(repeats):  # interleaved, each in a fresh process
        for mode, out in (("--raw-child", raws), ("--load-child", loads)):
            if cold and not drop_page_cache():
                return None
            out.append(child(mode, root))
    raw_s, raw_bytes = min((d["raw_s"], d["bytes"]) for d in raws)
    best = min(loads, key=lambda d: d["load_s"])
    loaded = best["loaded_bytes"]
    added = max(d["peak_rss"] - d["rss_before"] for d in loads)
    return {"load_s": round(best["load_s"], 3), "load_MBps": round(loaded / best["load_s"] / 1e6, 1),
            "raw_read_s": round(raw_s, 3), "raw_read_MBps": round(raw_bytes / raw_s / 1e6, 1),
            "load_vs_raw_ratio": round(raw_s / best["load_s"], 3),
            "peak_rss_added_bytes": added, "peak_rss_ratio": round(added / loaded, 3),
            "peak_rss_total_bytes": max(d["peak_rss"] for d in loads)}


def bench_backend(workdir: Path, backend: str, n: int, shard_segments: int, chunk_rows: int,
                  repeats: int, modes: tuple[str, ...]) -> dict:
    root = workdir / f"cache-{backend}"
    shutil.rmtree(root, ignore_errors=True)
    write_s = write_cache(root, backend, n, shard_segments, chunk_rows)
    nbytes = sum(p.stat().st_size for p in data_files(root))
    out = {"backend": backend, "segments": n, "bytes_written": nbytes,
           "write_s": round(write_s, 3), "write_MBps": round(nbytes / write_s / 1e6, 1)}
    for mode in modes:
        out[mode] = read_figures(root, repeats, cold=mode == "cold")
    shutil.rmtree(root, ignore_errors=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of EPIC-100 train (1 = full)")
    ap.add_argument("--backends", default="zarr,hdf5")
    ap.add_argument("--shard-segments", type=int, default=256)
    ap.add_argument("--chunk-rows", type=int, default=None, help="default: CacheConfig's")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="warm,cold", help="page-cache states to measure")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--load-child", help=argparse.SUPPRESS)
    ap.add_argument("--raw-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.raw_child:
        raw_s, nbytes = raw_read(data_files(Path(args.raw_child)))
        print(json.dumps({"raw_s": raw_s, "bytes": nbytes}))
        return
    if args.load_child:
        print(json.dumps(load_child(args.load_child)))
        return
    n = max(1, round(FULL_SEGMENTS * args.scale))
    from xmic.cache.config import CacheConfig
    chunk_rows = args.chunk_rows or CacheConfig().chunk_rows
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="xmic-bench-"))
    results = {"benchmark": "cache_io", "scale": args.scale, "segments": n,
               "frames_per_segment": FRAMES, "dim": DIM, "chunk_rows": chunk_rows, "views": len(VIEWS),
               "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
               "date": time.strftime("%Y-%m-%d"), "goals": {"load_vs_raw_ratio": ">= 0.5",
                                                            "peak_rss_ratio": "<= 1.5"},
               "backends": []}
    try:
        for backend in args.backends.split(","):
            r = bench_backend(workdir, backend, n, args.shard_segments, chunk_rows, args.repeats,
                              tuple(args.modes.split(",")))
            results["backends"].append(r)
            print(f"{backend:5s} {n} segs, {r['bytes_written'] / 1e9:.2f} GB: write "
                  f"{r['write_MBps']} MB/s", flush=True)
            for mode in args.modes.split(","):
                m = r[mode]
                if m is None:
                    print(f"  {mode}: skipped (dropping the page cache needs root)")
                    continue
                print(f"  {mode}: load {m['load_MBps']} MB/s, raw read {m['raw_read_MBps']} MB/s, "
                      f"ratio {m['load_vs_raw_ratio']} (goal >= 0.5) | peak RSS added "
                      f"{m['peak_rss_added_bytes'] / 1e9:.2f} GB = {m['peak_rss_ratio']} x loaded "
                      "(goal <= 1.5)", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

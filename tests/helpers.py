"""Helpers the tests share: small generated caches and fingerprints, the CLI run in-process (or
as a subprocess), feature comparison, and the path to ../shared/data when present."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub

from xmic.cache import Cache, CacheConfig, ShardWriter  # noqa: E402
from xmic.cache import fingerprint as F  # noqa: E402
from xmic.cache.index import make_plan  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def fingerprint(name: str = "ViT-B-16-quickgelu", crop: bool = False) -> dict:
    model = F.model_identity(name, "abc123", "3.3.0", "2.14.1", True)
    return F.view_fingerprint(model, "fp32", F.clip_preprocess(),
                              F.hand_crop_rule() if crop else None, {"policy": "all"})


def segment_columns(n: int, split: str = "train", prefix: str = "P01_01") -> dict:
    return dict(segment_id=[f"{prefix}_{split}_{i}" for i in range(n)], dataset=["epic"] * n,
                split=[split] * n, video_id=[prefix] * n, start_frame=[10 * i for i in range(n)],
                stop_frame=[10 * i + 9 for i in range(n)], start_sec=[i * 1.0 for i in range(n)],
                stop_sec=[i + 0.9 for i in range(n)], fps=[10.0] * n, verb_id=[i % 3 for i in range(n)],
                verb=["take"] * n, noun_id=[i % 5 for i in range(n)], noun=["spoon"] * n)


def segment_frames(segment_id: str, dim: int, view: str) -> np.ndarray:
    """Deterministic frames [n, D] of a segment (n in 1..6) for a view."""
    import zlib
    rng = np.random.default_rng(zlib.crc32(f"{segment_id}/{view}".encode()))
    n = 1 + zlib.crc32(segment_id.encode()) % 6
    return rng.standard_normal((n, dim)).astype(np.float32)


def fill_cache(root: Path, backend: str = "zarr", n: int = 10, dim: int = 16,
               views=("full_frame", "hand_crop"), splits=("train", "validation"),
               shard_segments: int = 4, fail_every: int = 0, resume: bool = False) -> Cache:
    """A generated cache; ``resume`` skips shards already committed (as a re-run does)."""
    cache = Cache.create(root, "epic", CacheConfig(backend=backend, shard_segments=shard_segments))
    for split in splits:
        cache.add_plan(make_plan(segment_columns(n, split), shard_segments, split))
    for view in views:
        for shard in cache.shards():
            if resume and cache.shard_state(view, shard) == "done":
                continue
            with ShardWriter(cache, view, shard, dim, fingerprint(crop=view == "hand_crop")) as w:
                for i, sid in enumerate(w.segment_ids):
                    if fail_every and int(sid.rsplit("_", 1)[1]) % fail_every == fail_every - 1:
                        w.fail(sid, "decode error: synthetic")
                        continue
                    a = segment_frames(sid, dim, view)
                    w.add(sid, a, range(0, 2 * len(a), 2))
                assert w.commit()
    return cache


def _run_in_process(args: list[str], cwd, env) -> subprocess.CompletedProcess:
    import traceback

    from click.testing import CliRunner

    from xmic.cli import main
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        r = CliRunner(env=env).invoke(main, args, catch_exceptions=True)
    finally:
        os.chdir(old)
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(r.exception))
    return subprocess.CompletedProcess(["xmic", *args], r.exit_code, r.stdout, stderr)


def run_xmic(*args, check=True, subprocess_: bool = False, cwd=None, env=None):
    """Run the real CLI: in this process with click's runner (fast; a command that raises
    anything but its own exit gives returncode 1 and the traceback on stderr), or, with
    ``subprocess_`` (where a crash or a signal is the point), as a user would."""
    args = [str(a) for a in args]
    if subprocess_:
        cp = subprocess.run([sys.executable, "-m", "xmic.cli", *args], capture_output=True,
                            text=True, cwd=cwd, env=env)
    else:
        cp = _run_in_process(args, cwd, env)
    if check and cp.returncode != 0:
        raise AssertionError(f"xmic {' '.join(map(str, args))} failed ({cp.returncode}):\n"
                             f"{cp.stdout}\n{cp.stderr}")
    return cp


def assert_same_features(a: Path, b: Path, views=("full_frame", "hand_crop"), split="train") -> None:
    """Two caches hold the same segments, offsets and feature bytes for ``views`` of ``split``."""
    from xmic.cache.reader import load_split
    x, y = load_split(Cache.open(a), list(views), split), load_split(Cache.open(b), list(views), split)
    assert x.segments["segment_id"].to_pylist() == y.segments["segment_id"].to_pylist()
    for v in views:
        assert x.views[v].features.tobytes() == y.views[v].features.tobytes(), v
        assert np.array_equal(x.views[v].offsets, y.views[v].offsets), v


def make_hub(root: Path, monkeypatch, seed: int = 3) -> Path:
    """An offline Hugging Face hub cache, laid out as huggingface_hub lays it, holding the tiny
    model's weights as ``hf-hub:xmic-test/tiny``; returns the same weights as a local file."""
    import huggingface_hub.constants as hc
    from safetensors.torch import save_file

    from xmic.towers.encoders import TINY_CONFIG, load_clip
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # read at import: set it for this test too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hub"))
    repo = root / "hub" / "models--xmic-test--tiny"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    enc = load_clip(str(TINY_CONFIG), "random", seed=seed)
    sd = {k: v.contiguous() for k, v in enc.model.state_dict().items()}
    save_file(sd, str(snap / "open_clip_model.safetensors"))
    save_file(sd, str(root / "local.safetensors"))
    return root / "local.safetensors"


def read_wandb_run(path: Path) -> tuple[set, str | None]:
    """(history keys, group) of an offline W&B run file (``run-ID.wandb``): W&B's transaction log,
    a ``:W&B`` header then LevelDB log blocks of 32 KiB (crc32 4, length 2, type 1: full, first,
    middle, last) holding ``wandb_internal_pb2.Record`` messages."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, block, records, part = Path(path).read_bytes(), 7, 32768, [], b""
    assert data[:4] == b":W&B", path
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        part = chunk if kind in (1, 2) else part + chunk
        if kind in (1, 4):
            records.append(part)
    keys, group = set(), None
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.HasField("history"):
            keys |= {i.key or "/".join(i.nested_key) for i in rec.history.item}
        if rec.HasField("run"):
            group = rec.run.run_group
    return keys, group

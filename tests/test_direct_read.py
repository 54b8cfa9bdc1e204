"""The direct-read path gives exactly what the libraries read, and steps aside when it must."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import fill_cache, fingerprint, segment_columns
from xmic.cache import Cache, CacheConfig, CacheError, ShardWriter, load_split
from xmic.cache import backends
from xmic.cache.direct_read import read_direct
from xmic.cache.index import make_plan
from xmic.cache.verify import verify


def library_read(cache, view, shard):
    m = cache.marker(view, shard)
    return backends.read_array(m["backend"], cache.root / "views" / view / shard / m["data"])


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
@pytest.mark.parametrize("chunk_rows", [3, 8192])
def test_direct_equals_library(tmp_path, backend, chunk_rows):
    cache = Cache.create(tmp_path / "c", "epic", CacheConfig(backend=backend, shard_segments=5,
                                                            chunk_rows=chunk_rows))
    cache.add_plan(make_plan(segment_columns(9), 5, "train"))
    from helpers import segment_frames
    for shard in cache.shards():
        with ShardWriter(cache, "v", shard, 16, fingerprint()) as w:
            for sid in w.segment_ids:
                a = segment_frames(sid, 16, "v")
                w.add(sid, a, range(len(a)))
            w.commit()
    for shard in cache.shards():
        want = library_read(cache, "v", shard)
        out = np.full_like(want, 7)
        m = cache.marker("v", shard)
        assert read_direct(backend, cache.root / "views" / "v" / shard / m["data"], out)
        assert out.tobytes() == want.tobytes()


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_load_takes_direct_path(small_cache, tmp_path, monkeypatch, backend):
    cache = fill_cache(tmp_path / backend, backend=backend)
    want = load_split(cache, ["full_frame"], "train").views["full_frame"].features.copy()

    def refuse(*a, **k):
        raise AssertionError("library read used")
    monkeypatch.setattr(backends, "read_array", refuse)
    import xmic.cache.reader as reader
    monkeypatch.setattr(reader, "read_array", refuse)
    got = load_split(cache, ["full_frame"], "train").views["full_frame"].features
    assert got.tobytes() == want.tobytes()


def test_compressed_zarr_falls_back(tmp_path):
    plain = fill_cache(tmp_path / "a")
    cache = Cache.create(tmp_path / "z", "epic", CacheConfig(compression="zstd", shard_segments=4))
    cache.add_plan(plain.plan())
    for shard in plain.committed("full_frame"):
        rows = plain.shard_rows("full_frame", shard)
        arr = library_read(plain, "full_frame", shard)
        with ShardWriter(cache, "full_frame", shard, 16, fingerprint()) as w:
            for sid, off, cnt, fi, st, err in zip(*(rows[c].to_pylist() for c in rows.column_names)):
                w.add(sid, arr[off:off + cnt], fi)
            w.commit()
    m = cache.marker("full_frame", cache.shards()[0])
    out = np.empty((m["rows"], 16), np.float16)
    assert not read_direct("zarr", cache.root / "views" / "full_frame" / cache.shards()[0] / "data.zarr", out)
    a = load_split(cache, ["full_frame"], "train").views["full_frame"].features
    b = load_split(plain, ["full_frame"], "train").views["full_frame"].features
    assert a.tobytes() == b.tobytes() and verify(cache, deep=True) == []


def test_zarr_unwritten_inner_chunk_reads_as_zeros(tmp_path):
    cache = Cache.create(tmp_path / "c", "epic", CacheConfig(shard_segments=3, chunk_rows=2))
    cache.add_plan(make_plan(segment_columns(3), 3, "train"))
    frames = [np.zeros((2, 8), np.float32), np.ones((3, 8), np.float32), np.full((1, 8), 2, np.float32)]
    with ShardWriter(cache, "v", "train-00000", 8, fingerprint()) as w:
        for sid, a in zip(w.segment_ids, frames):
            w.add(sid, a, range(len(a)))
        w.commit()
    assert verify(cache, deep=True) == []
    f = load_split(cache, ["v"], "train").views["v"].features
    assert f.tolist() == np.concatenate(frames).astype(np.float16).tolist()


def test_zarr_damaged_shard_index(small_cache):
    shard = small_cache.shards()[0]
    p = small_cache.root / "views" / "full_frame" / shard / "data.zarr" / "c" / "0" / "0"
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 0xFF  # inside the index, before its crc32c
    p.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="shard index checksum mismatch"):
        load_split(small_cache, ["full_frame"], "train")
    assert any(shard in x for x in verify(small_cache))

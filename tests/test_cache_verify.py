"""verify catches: truncated shard, flipped byte (--deep), missing marker, index row past the end,
fingerprint mismatch, NaN in data; and the CLI prints one line per problem and exits 1."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import fill_cache, run_xmic
from xmic.cache import Cache, CacheError, load_split
from xmic.cache.verify import verify

VIEW, SHARD = "full_frame", "train-00001"


def data_file(cache, backend):
    d = cache.root / "views" / VIEW / SHARD
    return d / "data.zarr" / "c" / "0" / "0" if backend == "zarr" else d / "data.h5"


def data_offset(path, backend):
    """Byte offset of the first array element inside the data file (no compression)."""
    if backend == "zarr":
        return 0
    import h5py
    with h5py.File(path, "r") as f:
        ds = f["embeddings"]
        return ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_clean_cache_verifies(tmp_path, backend):
    cache = fill_cache(tmp_path / "c", backend=backend)
    assert verify(cache) == [] and verify(cache, deep=True) == []
    cp = run_xmic("cache", "verify", cache.root, "--deep")
    assert "verified (deep)" in cp.stdout


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_truncated_shard(tmp_path, backend):
    cache = fill_cache(tmp_path / "c", backend=backend)
    p = data_file(cache, backend)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    problems = verify(cache)
    assert any(f"view {VIEW}, shard {SHARD}" in x and "truncated" in x for x in problems), problems
    with pytest.raises(CacheError, match="truncated"):
        load_split(cache, [VIEW], "train")


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_flipped_byte_needs_deep(tmp_path, backend):
    cache = fill_cache(tmp_path / "c", backend=backend)
    p = data_file(cache, backend)
    raw = bytearray(p.read_bytes())
    raw[data_offset(p, backend)] ^= 0x01  # lowest mantissa bit of the first value: still finite
    p.write_bytes(bytes(raw))
    assert verify(cache) == []
    problems = verify(cache, deep=True)
    assert problems == [f"view {VIEW}, shard {SHARD}: data checksum differs from the marker (bytes "
                        "changed after commit): delete the shard folder and re-run it"]
    cp = run_xmic("cache", "verify", cache.root, "--deep", check=False)
    assert cp.returncode == 1 and cp.stdout.strip() == problems[0]


def test_missing_marker(small_cache):
    (small_cache.root / "views" / VIEW / SHARD / "marker.json").unlink()
    problems = verify(small_cache)
    assert any("folder without a completion marker" in x and SHARD in x for x in problems)
    assert any(x.startswith(f"view {VIEW}, shard {SHARD}: not committed") for x in problems)
    assert small_cache.shard_state(VIEW, SHARD) != "done"
    assert verify(small_cache, partial=True) == [
        x for x in problems if "folder without" in x]


def test_index_row_past_end(small_cache):
    small_cache.index()
    path = small_cache.root / "index.parquet"
    t = pq.read_table(path)
    off = t["full_frame__offset"].to_pylist()
    off[5] = 10_000
    t = t.set_column(t.column_names.index("full_frame__offset"), "full_frame__offset",
                     pa.array(off, pa.int64()))
    pq.write_table(t, path)  # keeps the signature: readers take it as current
    sid = t["segment_id"][5].as_py()
    problems = verify(small_cache)
    assert any(f"segment {sid}, view full_frame" in x and "outside shard" in x for x in problems)
    with pytest.raises(CacheError, match=f"segment {sid} points past"):
        load_split(small_cache, ["full_frame"], "train")


def test_rows_past_end_in_shard(small_cache):
    rows_path = small_cache.root / "views" / VIEW / SHARD / "rows.parquet"
    t = pq.read_table(rows_path)
    cnt = t["count"].to_pylist()
    cnt[-1] += 50
    pq.write_table(t.set_column(2, "count", pa.array(cnt, pa.int32())), rows_path)
    problems = verify(small_cache)
    assert any("rows.parquet differs from the hash" in x for x in problems)
    assert any("lie past the end of the shard" in x for x in problems)


def test_fingerprint_mismatch_in_marker(small_cache):
    mpath = small_cache.root / "views" / VIEW / SHARD / "marker.json"
    m = json.loads(mpath.read_text())
    m["fingerprint"]["preprocess"]["size"] = 336
    mpath.write_text(json.dumps(m))
    problems = verify(small_cache)
    assert len(problems) == 1 and "preprocess.size: 224 != 336" in problems[0] and SHARD in problems[0]


def test_nan_in_data(tmp_path):
    cache = fill_cache(tmp_path / "c", backend="hdf5")
    import h5py
    with h5py.File(data_file(cache, "hdf5"), "r+") as f:
        f["embeddings"][2, 3] = np.nan
    problems = verify(cache)
    assert any("1 row(s) hold NaN or Inf, first at row 2" in x for x in problems)


def test_vocab_damage_and_stale_index(small_cache):
    from helpers import fingerprint
    from xmic.cache.vocab import add_vocab
    add_vocab(small_cache, "noun", ["a", "b"], np.ones((2, 16)), "{}", fingerprint())
    np.save(small_cache.root / "vocab" / "noun" / "embeddings.npy", np.zeros((2, 16), np.float32))
    assert any("vocabulary noun" in x and "checksum" in x for x in verify(small_cache))


def test_shard_path_outside_cache_is_refused(small_cache):
    with pytest.raises(CacheError, match="invalid shard name"):
        small_cache.marker(VIEW, "../../etc")
    m = small_cache.marker(VIEW, SHARD)
    m["files"] = {"../../../../etc/passwd": 10}
    (small_cache.root / "views" / VIEW / SHARD / "marker.json").write_text(json.dumps(m))
    assert any("outside the cache" in x for x in verify(Cache.open(small_cache.root)))

"""Direct reads of uncompressed shards: chunk bytes straight into the caller's array.

Inputs: a shard's data path, its backend and the destination array ``out`` [rows, D].
Output: ``read_direct(...) -> bool``: True when ``out`` was filled; False when the file is not
in the simple layout this path knows, and the caller must use the library read instead.

Both libraries copy every chunk through a buffer of their own, which costs most of a warm
load. The cache writes each shard once in a fixed layout: uncompressed, little-endian chunks of
whole rows (full width D). For that layout the bytes of rows r0..r1 are one contiguous range of
one chunk, so a plain ``readinto`` can place them in ``out``. Chunk locations come from
h5py's public ``DatasetID.get_chunk_info`` (HDF5) and from the shard index defined by the Zarr
v3 ``sharding_indexed`` codec spec (index at the end: n x (offset, nbytes) uint64 LE, then a
crc32c that is checked). ``verify --deep`` reads through the libraries, so the two paths are
cross-checked.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from xmic.cache.paths import H5_DATASET, CacheError

EMPTY = 2**64 - 1  # shard-index entry of an inner chunk that was never written (fill value)


def _little(dtype: np.dtype) -> bool:
    return dtype.byteorder == "<" or (dtype.byteorder in "=|" and sys.byteorder == "little")


def _hdf5_ranges(path: Path, out: np.ndarray):
    """[(byte_offset, row0, nrows)] of an unfiltered, row-chunked HDF5 dataset, or None."""
    import h5py
    with h5py.File(path, "r", locking=False) as f:
        d = f[H5_DATASET]
        if d.shape != out.shape or d.dtype != out.dtype or not _little(d.dtype):
            return None
        if d.compression or d.fletcher32 or d.scaleoffset or d.shuffle:
            return None
        rows, dim = out.shape
        if d.chunks is None:
            off = d.id.get_offset()
            return None if off is None else [(off, 0, rows)]
        cr = d.chunks[0]
        if d.chunks[1] != dim or d.id.get_num_chunks() != -(-rows // cr):
            return None
        ranges = []
        for i in range(d.id.get_num_chunks()):
            info = d.id.get_chunk_info(i)
            if info.filter_mask != 0 or info.chunk_offset[1] != 0:
                return None
            r0 = info.chunk_offset[0]
            ranges.append((info.byte_offset, r0, min(cr, rows - r0)))
    return ranges


def _zarr_ranges(path: Path, out: np.ndarray):
    """[(byte_offset or None, row0, nrows)] of a one-shard, uncompressed zarr v3 array, or None.
    ``None`` as offset marks an inner chunk never written (its rows are the fill value)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    rows, dim = out.shape
    try:
        outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
        (codec,) = meta["codecs"]
        cfg = codec["configuration"]
        inner = cfg["chunk_shape"]
        simple = (meta["zarr_format"] == 3 and meta["shape"] == [rows, dim]
                  and np.dtype(meta["data_type"]) == out.dtype and _little(out.dtype)
                  and meta["chunk_key_encoding"] == {"name": "default",
                                                     "configuration": {"separator": "/"}}
                  and codec["name"] == "sharding_indexed" and outer[0] >= rows
                  and outer[1] == dim and inner[1] == dim and outer[0] % inner[0] == 0
                  and cfg.get("index_location", "end") == "end"
                  and cfg["codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}]
                  and cfg["index_codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}},
                                              {"name": "crc32c"}]
                  and float(meta.get("fill_value", 0)) == 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    if not simple:
        return None
    shard = path / "c" / "0" / "0"
    cr, n = inner[0], outer[0] // inner[0]
    size = n * 16 + 4
    with open(shard, "rb") as f:
        f.seek(0, 2)
        if f.tell() < size:
            raise CacheError(f"{shard}: too short for its shard index (truncated?)")
        f.seek(-size, 2)
        tail = f.read(size)
    import google_crc32c
    if google_crc32c.value(tail[:-4]) != int.from_bytes(tail[-4:], "little"):
        raise CacheError(f"{shard}: shard index checksum mismatch (damaged file); delete the "
                         "shard folder and re-run it")
    index = np.frombuffer(tail[:-4], dtype="<u8").reshape(n, 2)
    chunk_bytes = cr * dim * out.dtype.itemsize
    ranges = []
    for i in range(-(-rows // cr)):
        off, nbytes = int(index[i, 0]), int(index[i, 1])
        if off == EMPTY and nbytes == EMPTY:
            ranges.append((None, i * cr, min(cr, rows - i * cr)))
        elif nbytes != chunk_bytes:
            return None
        else:
            ranges.append((off, i * cr, min(cr, rows - i * cr)))
    return ranges, shard


def read_direct(backend: str, path: Path, out: np.ndarray) -> bool:
    """Fill ``out`` [rows, D] from an uncompressed shard; False if the layout is not simple."""
    if out.shape[0] == 0 or not out.flags.c_contiguous:
        return out.shape[0] == 0
    if backend == "hdf5":
        ranges, file = _hdf5_ranges(path, out), path
    elif backend == "zarr":
        found = _zarr_ranges(path, out)
        ranges, file = found if found else (None, None)
    else:
        return False
    if ranges is None:
        return False
    row_bytes = out.shape[1] * out.dtype.itemsize
    buf = memoryview(out.reshape(-1).view(np.uint8))
    with open(file, "rb", buffering=0) as f:
        for off, r0, nrows in ranges:
            dest = buf[r0 * row_bytes:(r0 + nrows) * row_bytes]
            if off is None:
                out[r0:r0 + nrows] = 0
                continue
            f.seek(off)
            got = 0
            while got < len(dest):
                k = f.readinto(dest[got:])
                if not k:
                    raise CacheError(f"{file}: ends inside rows {r0}..{r0 + nrows} (truncated?)")
                got += k
    return True

"""Array backends for one shard of one view: Zarr v3 (sharding codec) or HDF5 (chunked).

Inputs: a 2-D array [rows, D] (float16 or float32) and a target path inside a shard's temporary
folder. Outputs: ``data.zarr`` (one Zarr v3 array whose single storage object is a sharding-codec
shard of ``chunk_rows``-row inner chunks) or ``data.h5`` (dataset ``embeddings``, chunked); and the
whole array back as numpy with one read. ``array_checksum`` hashes the little-endian C-order
bytes, so the same data has the same checksum in either backend.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from xmic.files.atomic import write_new
from xmic.cache.direct_read import read_direct
from xmic.cache.paths import DATA, H5_DATASET, CacheError

BACKENDS = tuple(DATA)


def array_checksum(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.byteswap().view(a.dtype.newbyteorder("<"))
    return "sha256:" + hashlib.sha256(a.tobytes() if a.size == 0 else memoryview(a).cast("B")).hexdigest()


def _zarr_compressors(compression: str):
    if compression == "none":
        return None
    if compression == "zstd":
        from zarr.codecs import ZstdCodec
        return [ZstdCodec(level=3)]
    raise CacheError(f"unknown compression {compression!r}; use none or zstd")


def write_array(backend: str, folder: Path, arr: np.ndarray, chunk_rows: int,
                compression: str = "none") -> Path:
    """Write ``arr`` [rows, D] as the shard's data file in ``folder`` (a fresh temporary folder
    of ours); returns its path. HDF5 is built in memory (core driver, no backing store) and its
    file image written with plain ``os.write``: the HDF5 library never meets a full disk, which
    it cannot survive. Zarr writes through Python's file I/O, which raises ENOSPC cleanly."""
    if arr.ndim != 2:
        raise CacheError(f"shard arrays are 2-D [rows, D], got shape {arr.shape}")
    path = Path(folder) / DATA[backend]
    rows, dim = arr.shape
    chunk = max(1, min(chunk_rows, rows or 1))
    if backend == "zarr":
        import zarr
        outer = max(chunk, -(-rows // chunk) * chunk)  # one storage object per shard
        z = zarr.create_array(store=str(path), shape=arr.shape, dtype=arr.dtype,
                              chunks=(chunk, dim), shards=(outer, dim),
                              compressors=_zarr_compressors(compression), fill_value=0)
        if rows:
            z[:] = arr
    elif backend == "hdf5":
        if compression == "zstd":
            raise CacheError("compression zstd is only available with the zarr backend; "
                             "use compression=none for hdf5")
        write_new(path, hdf5_image(arr, chunk), folder)
    else:
        raise CacheError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    return path


def hdf5_image(arr: np.ndarray, chunk: int) -> bytes:
    """The bytes of an HDF5 file holding ``arr`` [rows, D] as dataset ``embeddings``."""
    import h5py
    with h5py.File(f"xmic-image-{id(arr)}.h5", "w", driver="core", backing_store=False,
                   locking=False, track_order=False) as f:
        f.create_dataset(H5_DATASET, data=arr, chunks=(chunk, arr.shape[1]) if len(arr) else None,
                         track_times=False)
        f.flush()
        return f.id.get_file_image()


def read_array(backend: str, path: Path) -> np.ndarray:
    """The whole shard array [rows, D] with one read."""
    try:
        if backend == "zarr":
            import zarr
            z = zarr.open_array(str(path), mode="r")
            return np.asarray(z[...])
        if backend == "hdf5":
            import h5py
            with h5py.File(path, "r", locking=False) as f:
                return f[H5_DATASET][()]
    except CacheError:
        raise
    except Exception as e:  # corrupt files raise many kinds of errors
        raise CacheError(f"{path}: cannot read shard data ({type(e).__name__}: {e}); "
                         "run `xmic cache verify` and re-run the shard") from None
    raise CacheError(f"unknown backend {backend!r}")


def read_into(backend: str, path: Path, out: np.ndarray) -> None:
    """Read the whole shard array straight into ``out`` [rows, D] (no temporary copy)."""
    if out.shape[0] == 0:
        return
    try:
        if read_direct(backend, path, out):
            return
        if backend == "zarr":
            import zarr
            from zarr.core.buffer import default_buffer_prototype
            z = zarr.open_array(str(path), mode="r")
            if tuple(z.shape) != out.shape:
                raise CacheError(f"{path}: shard holds {tuple(z.shape)}, expected {out.shape}")
            z.get_basic_selection(Ellipsis,
                                  out=default_buffer_prototype().nd_buffer.from_numpy_array(out))
            return
        if backend == "hdf5":
            import h5py
            with h5py.File(path, "r", locking=False) as f:
                d = f[H5_DATASET]
                if d.shape != out.shape:
                    raise CacheError(f"{path}: shard holds {d.shape}, expected {out.shape}")
                d.read_direct(out)
            return
    except CacheError:
        raise
    except Exception as e:
        raise CacheError(f"{path}: cannot read shard data ({type(e).__name__}: {e}); "
                         "run `xmic cache verify` and re-run the shard") from None
    raise CacheError(f"unknown backend {backend!r}")


def array_shape(backend: str, path: Path) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) from the file's metadata, without reading the data."""
    try:
        if backend == "zarr":
            import zarr
            z = zarr.open_array(str(path), mode="r")
            return tuple(z.shape), str(z.dtype)
        import h5py
        with h5py.File(path, "r", locking=False) as f:
            d = f[H5_DATASET]
            return tuple(d.shape), str(d.dtype)
    except Exception as e:
        raise CacheError(f"{path}: cannot open shard data ({type(e).__name__}: {e})") from None

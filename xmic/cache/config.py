"""The cache stage's config (``CacheConfig``): backend, precision and shard geometry.

Input: YAML file and ``--set key=value`` overrides through ``xmic.config.load_config``.
Output: a frozen dataclass written to ``CACHE/config.yaml`` and into every shard marker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xmic.config import bounded


@dataclass(frozen=True)
class CacheConfig:
    backend: Literal["zarr", "hdf5"] = "zarr"
    # float16 halves disk and memory; CLIP embeddings (|x| < 10) lose nothing that matters.
    dtype: Literal["float16", "float32"] = "float16"
    # Segments per shard: the unit of work, of commit and of redo after a crash.
    # 256 EPIC segments x ~32 frames x 512 x 2 B is ~8 MB per view.
    shard_segments: int = bounded(256, 1, 1_000_000)
    # Rows per inner chunk (Zarr sharding codec) or HDF5 chunk. Large chunks read fastest
    # (bench/cache_io.py: HDF5 loads 0.9 -> 1.7 GB/s warm going from 2048 to 8192 rows).
    chunk_rows: int = bounded(8192, 1, 1 << 24)
    compression: Literal["none", "zstd"] = "none"

    def __post_init__(self):
        if self.shard_segments < 1:
            raise ValueError(f"shard_segments must be >= 1, got {self.shard_segments}")
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")

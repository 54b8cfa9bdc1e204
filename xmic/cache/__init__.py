"""The feature cache: the contract between extraction and training (docs/cache-format.md).

Public API: ``Cache`` (create/open, plan, views, index), ``ShardWriter`` (the one way to write
data), ``load_split`` (views of a split as contiguous arrays + offsets), ``add_vocab`` /
``load_vocab`` (class names + text embeddings), ``CacheConfig``.
"""
from xmic.cache.config import CacheConfig
from xmic.cache.paths import CacheError
from xmic.cache.reader import SplitData, ViewArray, load_split
from xmic.cache.cache_folder import Cache
from xmic.cache.writer import ShardWriter

__all__ = ["Cache", "CacheConfig", "CacheError", "ShardWriter", "SplitData", "ViewArray",
           "load_split"]

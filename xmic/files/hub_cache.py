"""The Hugging Face hub's local cache, as the environment names it when xmic asks.

Input: the environment (``HF_HUB_CACHE``, ``HF_HOME``, ``HF_HUB_OFFLINE``). Output: the cache
folder to hand to huggingface_hub (None: the library's default) and whether downloads are off.
Both are read at call time: huggingface_hub reads its variables once, at import, so a variable
set after that would otherwise be ignored. Used by named weights and published caches alike.
"""
from __future__ import annotations

import os
from pathlib import Path


def hub_cache_dir() -> str | None:
    """The Hugging Face hub cache folder, read now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set (to anything but 0), read now."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")

"""Weights by name: an open_clip pretrained tag (``openai``, ``dfn2b``, ...) or ``hf-hub:ORG/REPO``,
resolved to a local file through open_clip's own download and the Hugging Face cache.

Inputs: the model name (its open_clip config name) and the ``--weights`` value. Output: the
path of the cached weights file, then loaded exactly as a local file (its sha256 goes into
the fingerprint, so a named and a local copy of the same bytes make the same features).
``HF_HUB_OFFLINE=1`` (and no network) uses what the cache holds; ``HF_HUB_CACHE``/``HF_HOME`` say
where it is. Offline and not cached: ``EncoderError`` in one line saying what to run where
(``xmic extract fetch-weights`` on a machine with a network, then copy the file; the copy is
``xmic.towers.weight_files.fetch_weights``, which checks the file as a local one first).
"""
from __future__ import annotations

from pathlib import Path

from xmic.config import XmicError
from xmic.files.hub_cache import hub_cache_dir, hub_offline

HF_PREFIX = "hf-hub:"


class EncoderError(XmicError):
    """A model or weights that cannot be loaded as asked (raised here first: named weights
    that cannot be resolved; ``xmic.towers.encoders`` raises it for everything else)."""


def is_named(weights: str) -> bool:
    """A name to resolve rather than a file: ``hf-hub:...`` or a bare tag that is no path."""
    if weights.startswith(HF_PREFIX):
        return True
    return bool(weights) and weights != "random" and not weights.startswith("local-dir:") \
        and "/" not in weights and "." not in weights and not Path(weights).exists()


def pretrained_quick_gelu(model: str, weights: str) -> bool | None:
    """Whether a pretrained tag's weights were trained with QuickGELU (None: unknown)."""
    from open_clip.pretrained import get_pretrained_cfg
    if weights.startswith(HF_PREFIX):
        return None
    cfg = get_pretrained_cfg(model, weights) or get_pretrained_cfg(model.replace("-quickgelu", ""),
                                                                   weights)
    return None if not cfg else bool(cfg.get("quick_gelu", False))


def resolve(model: str, weights: str) -> Path:
    """The local file of named weights (downloaded into the cache when a network is there)."""
    from open_clip import list_pretrained_tags_by_model
    from open_clip.pretrained import (download_pretrained, download_pretrained_from_hf,
                                      get_pretrained_cfg)
    try:
        if weights.startswith(HF_PREFIX):
            path = download_pretrained_from_hf(weights[len(HF_PREFIX):], cache_dir=hub_cache_dir())
        else:
            cfg = get_pretrained_cfg(model, weights)
            if not cfg:
                tags = list_pretrained_tags_by_model(model)
                raise EncoderError(f"--weights {weights!r}: not a file, and not a pretrained tag of "
                                   f"{model} (its tags: {', '.join(tags) or 'none'}); give a "
                                   "weights file, local-dir:DIR, a tag or hf-hub:ORG/REPO")
            path = download_pretrained(cfg, cache_dir=hub_cache_dir())
    except EncoderError:
        raise
    except Exception as e:  # offline and uncached, no such repo, no network
        why = ("HF_HUB_OFFLINE is set and the Hugging Face cache "
               f"({hub_cache_dir() or '~/.cache/huggingface/hub'}) does not hold them" if hub_offline()
               else f"they could not be downloaded ({type(e).__name__})")
        raise EncoderError(f"weights {weights!r} for {model}: {why}; on a machine with a network "
                           f"run `xmic extract fetch-weights {model} {weights} --out FILE`, copy "
                           "FILE here and give --weights FILE") from None
    if not path:
        raise EncoderError(f"weights {weights!r} for {model}: open_clip names no download")
    return Path(path)

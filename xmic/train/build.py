"""What a run needs before its first step, all checked: vocabulary, views, widths, model.

Inputs: a ``Cache`` and a ``TrainConfig``. Outputs: ``RunInputs`` (the vocabulary's text
embeddings [C, D], the fingerprints of every view read and of the vocabulary) and the model built
from plain arguments (a prompt method's also from the frozen text tower its caller loaded, and
``text_input`` gives it the class names' prompt token ids instead of embeddings). Every refusal (missing vocabulary or view, width mismatch, a classified
stream made by another model than the text) is an error that names the cache and what to do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xmic.cache import Cache, CacheError
from xmic.cache.fingerprint import diff, same_model
from xmic.cache.vocab import Vocab, load_vocab, vocab_names
from xmic.config import ConfigError
from xmic.train.config import TrainConfig
from xmic.towers.text_tower import text_tower
from xmic.train.prompt_model import prompt_token_ids


@dataclass
class RunInputs:
    vocab: Vocab
    view_dims: dict[str, int]
    fingerprints: dict  # {"views": {view: fp}, "vocab": fp}


def check_inputs(cache: Cache, cfg: TrainConfig) -> RunInputs:
    name = cfg.vocab_name()
    if name not in vocab_names(cache):
        hint = (f"or train zero-shot on the bare prompts with --set model.zeroshot_vocab={cfg.label}"
                if cfg.record.vocab == "zeroshot_vocab" else "")
        raise CacheError(f"{cache.root}: no vocabulary {name!r} for label {cfg.label} (have "
                         f"{vocab_names(cache)}); add it with `xmic cache import-text` {hint}".strip())
    vocab = load_vocab(cache, name)
    have = cache.views()
    dims, fps = {}, {}
    for v in cfg.views():
        if v not in have:
            raise CacheError(f"{cache.root}: the {cfg.method} method reads view {v!r}, which this "
                             f"cache lacks (views: {sorted(have)}); set model.classified_view / "
                             "model.conditioning_views to views it has")
        dims[v], fps[v] = have[v]["dim"], have[v]["fingerprint"]
    cls = cfg.model.classified_view
    if dims[cls] != vocab.dim:
        raise CacheError(f"{cache.root}: classified view {cls!r} has width {dims[cls]} but "
                         f"vocabulary {name!r} has width {vocab.dim}; both must come from one model")
    if not same_model(fps[cls], vocab.fingerprint):
        lines = "; ".join(diff(fps[cls]["model"], vocab.fingerprint.get("model", {})))
        raise CacheError(f"{cache.root}: classified view {cls!r} was made by another model than "
                         f"vocabulary {name!r} ({lines}); the classifier needs text and image "
                         "embeddings of one model")
    _, cond = cfg.feeds()
    if cond:
        widths = {dims[v] for v in cond}
        if len(widths) != 1:
            raise CacheError(f"{cache.root}: conditioning views {cond} have widths "
                             f"{[dims[v] for v in cond]}; Encoder II views must share one width")
        width = widths.pop()
        if width % cfg.model.xmic.heads:
            raise ConfigError(f"model.xmic.heads={cfg.model.xmic.heads} does not divide the conditioning "
                              f"width {width} of views {cond}; choose a divisor of {width}")
    return RunInputs(vocab, dims, {"views": fps, "vocab": vocab.fingerprint})


def load_tower(cfg: TrainConfig, fingerprint: dict, source: dict | None, device):
    """The frozen text tower for a method that runs one (None for the others): the one the
    config's ``model.text_tower`` names, by default the one that made the vocabulary, kept by
    identity in this process (``towers.text_tower.text_tower``)."""
    if not cfg.record.tower:
        return None
    t = cfg.model.text_tower
    return text_tower(fingerprint, source, device, t.model or None, t.weights or None)


def model_dims(cfg: TrainConfig, inputs: RunInputs) -> dict:
    """Widths the model is built with: text D and conditioning D' (stored in checkpoints)."""
    _, cond = cfg.feeds()
    return {"text": inputs.vocab.dim, "cond": inputs.view_dims[cond[0]] if cond else None}


def build_model(cfg: TrainConfig, text_dim: int, cond_dim: int | None, classes: int,
                tower=None, init_context: bool = True) -> nn.Module:
    """The method's model, by its record's builder; ``tower``: the frozen text tower (prompt
    methods only); ``init_context``: False when a checkpoint's weights replace the initial
    context anyway."""
    return cfg.record.build(cfg, {"text": text_dim, "cond": cond_dim}, classes, tower,
                            init_context)


def text_input(cfg: TrainConfig, classes: list[str], embeddings, tower, device) -> torch.Tensor:
    """What the model scores classes with: embeddings [C, D] (float32, unnormalised, docs/method.md §2),
    or for the prompt methods the class names' prompt token ids [C, L] for the frozen tower."""
    if cfg.record.text == "prompt_ids":
        try:
            return prompt_token_ids(tower, classes, cfg.model.prompt.context).to(device)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(device)

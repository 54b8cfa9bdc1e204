"""The frozen text tower that made a vocabulary, for the prompt-learning methods (docs/method.md §5).

Inputs: a vocabulary's fingerprint (its ``model``: name, weights sha256, QuickGELU) and source
record (the ``--model`` and ``--weights`` extraction was given), or ``model``/``weights`` named
by the user, and a device. Output: a ``TextTower`` (frozen torch module on that device):
``tokenize(texts)`` -> token ids [N, L]; ``embed(ids)`` -> token embeddings [N, L, W];
``forward(x, ids)`` -> projected text features [N, D] from token embeddings x [N, L, W] (the ids
say where each sequence ends). ``encode_texts`` is open_clip's ``encode_text``.

Resolution, first that applies: the user's ``model``/``weights``; the model and weights recorded
when the vocabulary was extracted; the fingerprint's model name with its seeded random weights
(``random-seed-N``). The loaded tower's identity must equal the fingerprint's model (name, weights
sha256, QuickGELU) or it is refused with both shown. The image tower is dropped once the weights
are in: nothing of it is needed to train on cached image features.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from xmic.cache.fingerprint import diff, fingerprint_id, same_model
from xmic.config import XmicError
from xmic.towers.encoders import CONFIGS, load_clip

PACKAGED = CONFIGS  # model configs shipped with xmic


class TextTowerError(XmicError):
    """The vocabulary's text tower cannot be resolved, loaded, or is another model."""


class TextTower(nn.Module):
    """open_clip's text side (token embedding, positional embedding, transformer, final norm,
    pooling at the end-of-text token, projection), frozen."""

    def __init__(self, clip: nn.Module, tokenizer, identity: dict, source: dict):
        super().__init__()
        text = clip if hasattr(clip, "token_embedding") else getattr(clip, "text", None)
        if (text is None or not hasattr(text, "token_embedding") or
                getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False)):
            raise TextTowerError(f"model {identity['name']!r}: its text tower is not open_clip's "
                                 "CLIP text transformer; prompt learning supports that tower only")
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.transformer = text.transformer
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)
        self.pool_type = getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax"))
        self.eos_id = getattr(text, "text_eos_id", getattr(text, "eos_id", None))
        if self.pool_type not in ("argmax", "eos"):
            raise TextTowerError(f"model {identity['name']!r}: its text tower pools with "
                                 f"{self.pool_type!r}; prompt learning needs an end-of-text token")
        self.tokenizer, self.identity, self.source = tokenizer, identity, source
        self.width = int(self.token_embedding.embedding_dim)
        self.context_length = int(self.positional_embedding.shape[0])
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def dim(self) -> int:
        p = self.text_projection
        return int(p.out_features if isinstance(p, nn.Linear) else p.shape[1]) if p is not None \
            else self.width

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """[N, L] token ids (open_clip's tokenizer of this model)."""
        return self.tokenizer(list(texts)).to(self.positional_embedding.device)

    def end_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """[N] position of each sequence's end-of-text token (where the tower pools)."""
        if self.pool_type == "eos":
            return (ids == self.eos_id).int().argmax(dim=-1)
        return ids.argmax(dim=-1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids)                                   # [N, L, W]

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings x [N, L, W] (learned context already in place) -> features [N, D]."""
        from open_clip.transformer import text_global_pool
        cast = self.transformer.get_cast_dtype()
        x = x.to(cast) + self.positional_embedding.to(cast)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        x = text_global_pool(x, ids, self.pool_type, eos_token_id=self.eos_id)  # [N, W]
        p = self.text_projection
        return x if p is None else p(x) if isinstance(p, nn.Linear) else x @ p

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenize(texts)
        return self(self.embed(ids), ids)


PACKAGED_PREFIX = "packaged:"  # a model config shipped with xmic, recorded by its file name


def tower_source(model: str, weights: str) -> dict:
    """Where the text tower is, recorded with a vocabulary (prompt learning reloads it from
    there): a config shipped with xmic by its name (``packaged:NAME.json``, so the record
    survives reinstalling xmic elsewhere), the user's files as absolute paths."""
    def absolute(p: str) -> str:
        if p.startswith("local-dir:"):
            return "local-dir:" + str(Path(p[len("local-dir:"):]).resolve())
        if not Path(p).exists():
            return p
        path = Path(p).resolve()
        if path.parent == Path(PACKAGED).resolve():
            return PACKAGED_PREFIX + path.name
        return str(path)
    return {"model": absolute(model), "weights": absolute(weights)}


def _model_arg(name: str, recorded: str | None) -> str:
    """The model to build: the one recorded at extraction if it still exists, else the name
    (open_clip's registry, or a config shipped with xmic)."""
    if recorded and recorded.startswith(PACKAGED_PREFIX):
        recorded = str(PACKAGED / Path(recorded[len(PACKAGED_PREFIX):]).name)
    if recorded and (not recorded.endswith(".json") or Path(recorded).exists()):
        return recorded
    packaged = PACKAGED / f"{name}.json"
    return str(packaged) if packaged.exists() else name


def resolve_text_tower(fingerprint: dict, source: dict | None, model: str | None = None,
                       weights: str | None = None) -> tuple[str, str, int]:
    """(model, weights, seed) that should rebuild the tower a vocabulary fingerprint names."""
    fp_model = (fingerprint or {}).get("model") or {}
    if not fp_model.get("name"):
        raise TextTowerError(_unresolvable(fingerprint, "it names no model"))
    if fp_model["name"].startswith("timm:"):
        raise TextTowerError(_unresolvable(fingerprint, "a timm model has no text tower"))
    source = source or {}
    random_seed = re.fullmatch(r"random-seed-(\d+)", str(fp_model.get("weights_sha256", "")))
    seed = int(random_seed.group(1)) if random_seed else 0
    if weights is None:
        weights = "random" if random_seed else source.get("weights")
        if not weights:
            raise TextTowerError(_unresolvable(
                fingerprint, "the vocabulary does not record where its weights are; give "
                "--weights FILE (or local-dir:DIR) with the weights that made it"))
    if weights.startswith("local-dir:"):
        return weights, weights, seed
    return model or _model_arg(fp_model["name"], source.get("model")), weights, seed


def _unresolvable(fingerprint: dict, why: str) -> str:
    return (f"the text tower of this vocabulary cannot be resolved: {why}. Vocabulary "
            f"fingerprint {fingerprint_id(fingerprint or {})}: "
            f"{json.dumps((fingerprint or {}).get('model'), sort_keys=True)}")


def load_text_tower(fingerprint: dict, source: dict | None, device, model: str | None = None,
                    weights: str | None = None) -> TextTower:
    """The frozen tower that made the vocabulary (see the module docstring), on ``device``."""
    model_arg, weights_arg, seed = resolve_text_tower(fingerprint, source, model, weights)
    try:
        tower = build_text_tower(model_arg, weights_arg, seed, device)
    except XmicError as e:
        raise TextTowerError(_unresolvable(fingerprint, f"loading it failed ({e})")) from None
    if not same_model({"model": tower.identity}, fingerprint):
        lines = "; ".join(diff(fingerprint.get("model", {}), tower.identity))
        raise TextTowerError(
            f"the text tower {model_arg} with weights {weights_arg} is not the one that made the "
            f"vocabulary (fingerprint {fingerprint_id(fingerprint)}): {lines}; give the "
            "--model/--weights that made it")
    return tower


class LoadedTowers:
    """The towers this process loaded, kept by identity (the vocabulary's model, the
    ``model``/``weights`` asked for, the device): the prompt-learning runs of one process
    (seeds, labels, grids, their evaluations) share one frozen tower instead of passing a memo
    down. At most ``keep`` are held, the least recently used dropped first; ``loads`` counts
    the loads."""

    def __init__(self, keep: int = 2):
        self.keep, self.loads = keep, 0
        self._held: dict = {}

    def __call__(self, fingerprint: dict, source: dict | None, device, model: str | None = None,
                 weights: str | None = None) -> TextTower:
        key = (json.dumps(fingerprint.get("model"), sort_keys=True, default=str), model, weights,
               str(torch.device(device)))
        if key in self._held:
            self._held[key] = self._held.pop(key)  # most recently used last
            return self._held[key]
        tower = load_text_tower(fingerprint, source, device, model, weights)
        self.loads += 1
        self._held[key] = tower
        while len(self._held) > self.keep:
            self._held.pop(next(iter(self._held)))
        return tower

    def __len__(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        self._held.clear()


text_tower = LoadedTowers()  # the process's towers: ``text_tower(fingerprint, source, device)``


def build_text_tower(model: str, weights: str, seed: int, device) -> TextTower:
    """The text side of an open_clip model (``load_clip``'s arguments), frozen, on ``device``;
    the image side is dropped once the weights are in (it stays in the cache)."""
    enc = load_clip(model, weights, "cpu", "fp32", seed)
    if hasattr(enc.model, "visual"):
        enc.model.visual = None
    tower = TextTower(enc.model, enc.tokenizer, enc.identity, {"model": model, "weights": weights})
    return tower.to(torch.device(device))

"""Prompt learning on cached image features (docs/method.md §5): CoOp and CoCoOp. Imports nothing but torch.

Both map classified frames ``f`` [B, T, D] (``x`` unused) and a vocabulary's prompt token ids
``w`` [C, L] to logits [B, C], the interface of ``model.py`` with token ids in place of text
embeddings. The frozen text tower (``tower``: ``embed(ids)`` -> [N, L, W], ``tower(x, ids)`` ->
[N, D]) is held outside the module's parameters and state dict: a checkpoint holds only what
trains, and the tower is rebuilt from the vocabulary's fingerprint.
- Prompts: the ids of "X X ... X {name}." (M placeholders after the start token); the M token
  embeddings at positions 1..M are replaced by the learned context ctx [M, W].
- v̂ as for the zero-shot baseline: norm(mean_t norm(f_t)).
- ``CoOp``: w_c = tower([start, ctx, name_c . end]); logits exp(ℓ) cos(v̂, w_c). The text
  encoder runs over the C class prompts once per step.
- ``CoCoOp``: π = meta(v̂) [B, W] (Linear D -> D/16, ReLU, Linear D/16 -> W), ctx_b = ctx + π_b:
  the encoder runs once per (video, class), B × C sequences per step, in passes of at most
  ``text_batch`` sequences (chunks of videos and classes); with ``recompute`` each pass keeps no
  activations for the backward pass and is run again there (memory of one pass, ~1.3x the time).
Context init (``init``: embeddings [k, W] of a phrase such as "a photo of a", k <= M): the phrase
fills the last k positions, right before the class name; the first M - k are N(0, 0.02), CoOp's
generic context. ``init=None``: all M positions N(0, 0.02).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def zero_shot_video(f: torch.Tensor) -> torch.Tensor:
    """v̂ = norm(mean_t norm(f_t)): [B, T, D] -> [B, D]."""
    return F.normalize(F.normalize(f.float(), dim=-1).mean(dim=1), dim=-1)


def initial_context(context: int, width: int, init: torch.Tensor | None) -> torch.Tensor:
    """[M, W]: N(0, 0.02), the last k rows the embeddings of ``init`` [k, W] when given."""
    ctx = torch.randn(context, width) * 0.02
    if init is not None and len(init):
        if init.shape[0] > context or init.shape[1] != width:
            raise ValueError(f"context init of shape {tuple(init.shape)} does not fit "
                             f"{context} context vectors of width {width}")
        ctx[context - init.shape[0]:] = init.detach().float()
    return ctx


class _PromptLearner(nn.Module):
    def __init__(self, tower, width: int, context: int, init: torch.Tensor | None,
                 text_batch: int, recompute: bool, train_logit_scale: bool,
                 logit_scale_init: float):
        super().__init__()
        if context < 1 or text_batch < 1:
            raise ValueError(f"context ({context}) and text_batch ({text_batch}) must be >= 1")
        object.__setattr__(self, "tower", tower)  # frozen, not a parameter, not in checkpoints
        self.context, self.text_batch, self.recompute = context, text_batch, recompute
        self.ctx = nn.Parameter(initial_context(context, width, init))               # [M, W]
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)),
                                        requires_grad=train_logit_scale)

    def _encode(self, prompts: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] prompt embeddings, [N, L] ids -> normalised [N, D]."""
        if self.recompute and torch.is_grad_enabled() and prompts.requires_grad:
            out = checkpoint(self.tower, prompts, ids, use_reentrant=False)
        else:
            out = self.tower(prompts, ids)
        return F.normalize(out.float(), dim=-1)

    def _prompts(self, tokens: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """tokens [..., L, W] (frozen embeddings), ctx [..., M, W] -> [..., L, W]."""
        m = self.context
        return torch.cat([tokens[..., :1, :], ctx.to(tokens.dtype), tokens[..., 1 + m:, :]], dim=-2)


class CoOp(_PromptLearner):
    def __init__(self, tower, width: int, context: int = 16, init: torch.Tensor | None = None,
                 text_batch: int = 4096, recompute: bool = False, train_logit_scale: bool = True,
                 logit_scale_init: float = math.log(100.0)):
        super().__init__(tower, width, context, init, text_batch, recompute, train_logit_scale,
                         logit_scale_init)

    def class_embeddings(self, w: torch.Tensor) -> torch.Tensor:
        """Prompt ids [C, L] -> normalised class embeddings [C, D]."""
        with torch.no_grad():
            tokens = self.tower.embed(w)                                            # [C, L, W]
        out = []
        for c in range(0, len(w), self.text_batch):
            t = tokens[c:c + self.text_batch]
            ctx = self.ctx[None].expand(len(t), -1, -1)                            # [c, M, W]
            out.append(self._encode(self._prompts(t, ctx), w[c:c + self.text_batch]))
        return torch.cat(out)

    def forward(self, f: torch.Tensor, x, w: torch.Tensor) -> torch.Tensor:
        v = zero_shot_video(f)                                                      # [B, D]
        return self.logit_scale.exp() * v @ self.class_embeddings(w).t()           # [B, C]


class CoCoOp(_PromptLearner):
    def __init__(self, tower, dim: int, width: int, context: int = 16,
                 init: torch.Tensor | None = None, text_batch: int = 4096, recompute: bool = True,
                 meta_ratio: float = 1 / 16, train_logit_scale: bool = True,
                 logit_scale_init: float = math.log(100.0)):
        super().__init__(tower, width, context, init, text_batch, recompute, train_logit_scale,
                         logit_scale_init)
        hidden = max(1, int(round(dim * meta_ratio)))
        self.meta_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, width))

    def forward(self, f: torch.Tensor, x, w: torch.Tensor) -> torch.Tensor:
        v = zero_shot_video(f)                                                      # [B, D]
        ctx = self.ctx[None] + self.meta_net(v)[:, None]                            # [B, M, W]
        with torch.no_grad():
            tokens = self.tower.embed(w)                                            # [C, L, W]
        b, c = len(v), len(w)
        vb = min(b, self.text_batch)            # videos per pass
        cb = max(1, self.text_batch // vb)      # classes per pass: vb * cb <= text_batch
        rows = []
        for i in range(0, b, vb):
            vi, ci = v[i:i + vb], ctx[i:i + vb]
            cols = []
            for j in range(0, c, cb):
                t, ids = tokens[j:j + cb], w[j:j + cb]
                n, k = len(vi), len(t)
                prompts = self._prompts(t[None].expand(n, -1, -1, -1),
                                        ci[:, None].expand(-1, k, -1, -1))          # [n, k, L, W]
                feats = self._encode(prompts.reshape(n * k, *prompts.shape[2:]),
                                     ids.repeat(n, 1)).reshape(n, k, -1)           # [n, k, D]
                cols.append(torch.einsum("bd,bcd->bc", vi, feats))
            rows.append(torch.cat(cols, dim=1))
        return self.logit_scale.exp() * torch.cat(rows)                             # [B, C]


PLACEHOLDER = "X"


PROMPT_FORMAT = 2  # "X ... X {name}" (1: with a trailing ".", which the released trainers drop)


def prompt_token_ids(tower, names: list[str], context: int) -> torch.Tensor:
    """[C, L] ids of "X X ... X {name}" (``context`` placeholders after the start token, no
    trailing "." as the released X-MIC trainers build it: trainers/temporal_coop.py and
    temporal_cocoop.py), checked: one token per placeholder, no name cut off by the context."""
    ids = tower.tokenize([" ".join([PLACEHOLDER] * context) + f" {n}" for n in names])
    if context + 3 > ids.shape[1]:  # start, context, one name token, end
        raise ValueError(f"model.prompt.context={context} leaves no room for a class name in the "
                         f"text tower's context length {ids.shape[1]}")
    x = tower.tokenize([PLACEHOLDER])[0, 1]
    if not bool((ids[:, 1:1 + context] == x).all()):
        raise ValueError("the tokenizer does not give one token per context placeholder")
    ends = tower.end_positions(ids)
    cut = [names[i] for i in torch.nonzero(ends >= ids.shape[1] - 1).flatten().tolist()]
    if cut:
        raise ValueError(f"class name(s) {cut[:3]} do not fit the text tower's context length "
                         f"{ids.shape[1]} after {context} context vectors; lower model.prompt.context")
    return ids


def phrase_embedding(tower, phrase: str) -> torch.Tensor | None:
    """[k, W] token embeddings of ``phrase`` without start and end tokens (None when empty)."""
    if not phrase.strip():
        return None
    ids = tower.tokenize([phrase])
    end = int(tower.end_positions(ids)[0])
    with torch.no_grad():
        return tower.embed(ids)[0, 1:end].detach().cpu().float()

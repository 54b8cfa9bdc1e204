"""The X-MIC adapter (docs/method.md §3) and the baselines (docs/method.md §5). Imports nothing but torch.

Every model maps classified frames ``f`` [B, T, D], conditioning frames ``x`` [B, T, V, D']
(or None) and class text embeddings ``w`` [C, D] to logits [B, C]:
- ``XMICAdapter``: v̂ = norm(mean_t f); a_v = MLP(pool_t(spatial_v(norm(x)))) >= 0;
  w̃_c = norm(w_c + α a_v); s_c = exp(ℓ) <v̂, w̃_c>. Trainable: blocks, temporal embedding,
  output MLP (3,594,656 parameters at D = D' = 512) and ℓ when ``train_logit_scale``.
- ``ZeroShot``: 100 · cos(norm(mean_t norm(f_t)), norm(w)); no parameters.
- ``LinearProbe``: a linear layer on v̂ over the source classes (closed vocabulary).
- ``ClipAdapter``: v' = r · A(v̂) + (1 − r) · v̂ with a bottleneck MLP A; exp(ℓ) cos(v', w).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LayerNorm residual block: x += MHA(LN(x)); x += MLP(LN(x)); no dropout."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), QuickGELU(), nn.Linear(mlp_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, L, D]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def output_mlp(in_dim: int, hidden: int, out_dim: int, depth: int) -> nn.Sequential:
    """``depth`` linear layers in_dim -> hidden -> ... -> out_dim, each followed by ReLU."""
    if depth < 1:
        raise ValueError(f"output MLP depth must be >= 1, got {depth}")
    dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def video_embedding(f: torch.Tensor) -> torch.Tensor:
    """v̂ = norm(mean_t f_t): [B, T, D] -> [B, D]."""
    return F.normalize(f.float().mean(dim=1), dim=-1)


class XMICAdapter(nn.Module):
    def __init__(self, text_dim: int = 512, cond_dim: int = 512, views: int = 2, frames: int = 16,
                 heads: int = 4, spatial_layers: int = 1, temporal_layers: int = 2,
                 mlp_ratio: float = 0.25, out_hidden_ratio: float = 1 / 16, out_depth: int = 2,
                 temporal_pool: str = "attention", alpha: float = 2.0,
                 train_logit_scale: bool = True, logit_scale_init: float = math.log(100.0)):
        super().__init__()
        if temporal_pool not in ("attention", "mean"):
            raise ValueError(f"temporal_pool must be attention or mean, got {temporal_pool!r}")
        self.views, self.frames, self.alpha = views, frames, alpha
        self.temporal_pool = temporal_pool
        mlp_hidden = max(1, int(round(cond_dim * mlp_ratio)))
        # spatial step: only with several views; one view (no hand crops) goes straight to time
        self.spatial = nn.ModuleList(
            [Block(cond_dim, heads, mlp_hidden) for _ in range(spatial_layers if views > 1 else 0)])
        if temporal_pool == "attention":
            self.temporal_embedding = nn.Parameter(torch.randn(frames, cond_dim) * 0.01)  # [T, D']
            self.temporal = nn.ModuleList(
                [Block(cond_dim, heads, mlp_hidden) for _ in range(temporal_layers)])
        else:
            self.register_parameter("temporal_embedding", None)
            self.temporal = nn.ModuleList()
        self.out = output_mlp(cond_dim, max(1, int(round(cond_dim * out_hidden_ratio))), text_dim,
                              out_depth)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)),
                                        requires_grad=train_logit_scale)

    def conditioning_features(self, x: torch.Tensor) -> torch.Tensor:
        """a_v [B, D] from conditioning frames x [B, T, V, D']."""
        b, t, v, d = x.shape
        z = F.normalize(x.float(), dim=-1)
        if self.spatial:
            z = z.reshape(b * t, v, d)
            for blk in self.spatial:
                z = blk(z)
            z = z.mean(dim=1).reshape(b, t, d)  # [B, T, D']
        else:
            z = z.mean(dim=2)
        if self.temporal_pool == "attention":
            z = z + self.temporal_embedding[:t]
            for blk in self.temporal:
                z = blk(z)
        return self.out(z.mean(dim=1))  # [B, D], >= 0 through the final ReLU

    def forward(self, f: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        v = video_embedding(f)                                     # [B, D]
        a = self.conditioning_features(x)                          # [B, D]
        wc = F.normalize(w.float()[None] + self.alpha * a[:, None], dim=-1)  # [B, C, D]
        return self.logit_scale.exp() * torch.einsum("bd,bcd->bc", v, wc)


class ZeroShot(nn.Module):
    def forward(self, f: torch.Tensor, x, w: torch.Tensor) -> torch.Tensor:
        v = F.normalize(F.normalize(f.float(), dim=-1).mean(dim=1), dim=-1)
        return 100.0 * v @ F.normalize(w.float(), dim=-1).t()


class LinearProbe(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.head = nn.Linear(dim, classes)

    def forward(self, f: torch.Tensor, x, w: torch.Tensor) -> torch.Tensor:
        if w.shape[0] != self.head.out_features:
            raise ValueError(f"a linear probe scores its {self.head.out_features} training classes "
                             f"only; got a vocabulary of {w.shape[0]}")
        return self.head(video_embedding(f))


class ClipAdapter(nn.Module):
    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2,
                 logit_scale_init: float = math.log(100.0)):
        super().__init__()
        self.ratio = ratio
        self.adapter = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                     nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale_init)))

    def forward(self, f: torch.Tensor, x, w: torch.Tensor) -> torch.Tensor:
        v = video_embedding(f)
        v = F.normalize(self.ratio * self.adapter(v) + (1 - self.ratio) * v, dim=-1)
        return self.logit_scale.exp() * v @ F.normalize(w.float(), dim=-1).t()


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""Model invariants (SPEC §3): shapes, a_v >= 0, gradients reach every trainable parameter,
frozen inputs never change, the exact parameter count, and what each ablation switch changes."""
from __future__ import annotations

import math

import pytest
import torch

from xmic.train.model import (ClipAdapter, LinearProbe, XMICAdapter, ZeroShot,
                              trainable_parameters)

B, T, V, D, C = 3, 16, 2, 512, 7


def inputs(v=V, d=D, dc=D):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, T, d, generator=g), torch.randn(B, T, v, dc, generator=g),
            torch.randn(C, d, generator=g))


def test_exact_parameter_count_and_parts():
    m = XMICAdapter()
    assert trainable_parameters(m) - 1 == 3_594_656
    assert sum(p.numel() for p in m.spatial.parameters()) == 1_184_384
    assert sum(p.numel() for p in m.temporal.parameters()) == 2_368_768
    assert m.temporal_embedding.numel() == 8_192
    assert sum(p.numel() for p in m.out.parameters()) == 33_312
    assert m.logit_scale.requires_grad and m.logit_scale.item() == pytest.approx(math.log(100))
    assert m.temporal_embedding.std().item() == pytest.approx(0.01, rel=0.05)


def test_shapes_nonnegative_conditioning_and_frozen_inputs():
    m = XMICAdapter()
    f, x, w = inputs()
    copies = [t.clone() for t in (f, x, w)]
    logits = m(f, x, w)
    assert logits.shape == (B, C)
    a = m.conditioning_features(x)
    assert a.shape == (B, D) and (a >= 0).all()
    logits.logsumexp(1).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    for t, c in zip((f, x, w), copies):
        assert torch.equal(t, c) and t.grad is None


def test_score_matches_the_formula():
    m = XMICAdapter(text_dim=8, cond_dim=8, heads=2, frames=4)
    f, x, w = torch.randn(2, 4, 8), torch.randn(2, 4, 2, 8), torch.randn(5, 8)
    v = f.mean(1)
    v = v / v.norm(dim=-1, keepdim=True)
    a = m.conditioning_features(x)
    wt = w[None] + 2.0 * a[:, None]
    wt = wt / wt.norm(dim=-1, keepdim=True)
    want = 100 * (v[:, None] * wt).sum(-1)
    assert torch.allclose(m(f, x, w), want, atol=1e-4)


def test_ablation_switches():
    base = trainable_parameters(XMICAdapter())
    no_hands = XMICAdapter(views=1)
    assert len(no_hands.spatial) == 0 and trainable_parameters(no_hands) == base - 1_184_384
    f, x, w = inputs(v=1)
    assert no_hands(f, x, w).shape == (B, C)
    mean_pool = XMICAdapter(temporal_pool="mean")
    assert mean_pool.temporal_embedding is None and len(mean_pool.temporal) == 0
    assert trainable_parameters(mean_pool) == base - 2_368_768 - 8_192
    f, x, w = inputs()
    perm = x[:, torch.randperm(T)]
    assert torch.allclose(mean_pool(f, x, w), mean_pool(f, perm, w), atol=1e-4)  # order-free
    assert not torch.allclose(XMICAdapter()(f, x, w), XMICAdapter()(f, perm, w))
    assert trainable_parameters(XMICAdapter(temporal_layers=3)) == base + 1_184_384
    assert trainable_parameters(XMICAdapter(spatial_layers=2)) == base + 1_184_384
    deep = XMICAdapter(out_depth=3)
    assert trainable_parameters(deep) == base + 32 * 32 + 32
    zero_alpha = XMICAdapter(alpha=0.0)
    assert torch.allclose(zero_alpha(f, x, w), zero_alpha(f, torch.randn_like(x), w))
    fixed = XMICAdapter(train_logit_scale=False)
    assert trainable_parameters(fixed) == base - 1
    enc2 = XMICAdapter(text_dim=512, cond_dim=768, heads=4)
    f, x, w = inputs(dc=768)
    assert enc2(f, x, w).shape == (B, C)


def test_baselines():
    f, x, w = inputs()
    zs = ZeroShot()(f, None, w)
    fn = torch.nn.functional.normalize
    want = 100 * fn(fn(f, dim=-1).mean(1), dim=-1) @ fn(w, dim=-1).t()
    assert torch.allclose(zs, want, atol=1e-4) and list(ZeroShot().parameters()) == []
    lp = LinearProbe(D, C)
    assert lp(f, None, w).shape == (B, C) and trainable_parameters(lp) == D * C + C
    with pytest.raises(ValueError, match="training classes only"):
        lp(f, None, w[:3])
    ca = ClipAdapter(D)
    assert ca(f, None, w).shape == (B, C)
    assert trainable_parameters(ca) == 2 * D * (D // 4)

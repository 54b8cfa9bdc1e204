"""The training stage's config (``TrainConfig``), with SPEC §3–5 defaults.

Input: YAML file and ``--set key=value`` overrides (``model.alpha=1``, ``optim.lr=1e-4``).
Output: a frozen dataclass, written to ``RUN/config.yaml`` and into every checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    # Encoder I: the cache view whose frames are classified (v̂).
    classified_view: str = "hand_crop"
    # Encoder II: the adapter's input views, in order (hand crop, full frame). One view = the
    # "no hand crops" ablation (temporal step only).
    conditioning_views: tuple[str, ...] = ("hand_crop", "full_frame")
    heads: int = 4
    spatial_layers: int = 1
    temporal_layers: int = 2
    temporal_pool: Literal["attention", "mean"] = "attention"
    mlp_ratio: float = 0.25          # block MLP D' -> D'/4 -> D'
    out_hidden_ratio: float = 0.0625  # output MLP D' -> D'/16 -> D
    out_depth: int = 2
    alpha: float = 2.0
    train_logit_scale: bool = True   # the released code trains (and weight-decays) ℓ
    logit_scale_init: float = math.log(100.0)
    clip_adapter_ratio: float = 0.2
    clip_adapter_reduction: int = 4
    # vocabulary names in the cache; "{label}" becomes noun or verb
    text_vocab: str = "{label}"
    zeroshot_vocab: str = "{label}.photo"  # prompt "a photo of a {}" (SPEC §5)

    def __post_init__(self):
        if not self.conditioning_views:
            raise ValueError("conditioning_views must name at least one view")
        if self.out_depth < 1 or self.heads < 1 or self.temporal_layers < 0 or self.spatial_layers < 0:
            raise ValueError("out_depth and heads must be >= 1; layer counts >= 0")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_epochs: float = 5.0
    warmup_start_lr: float = 1e-7


@dataclass(frozen=True)
class TrainConfig:
    method: Literal["xmic", "zeroshot", "linear", "clip-adapter"] = "xmic"
    label: Literal["noun", "verb"] = "noun"
    split: str = "train"
    epochs: int = 15
    batch_size: int = 128
    frames: int = 16
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True                  # mixed precision on a GPU; always fp32 on the CPU
    # model selection on held-out source videos (0 = keep the last epoch)
    heldout_fraction: float = 0.1
    # the released behaviour: select the epoch on a target set ("CACHE:SPLIT"); this uses test data
    select_on_target_test_data: str | None = None
    eval_batch_size: int = 512
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or self.frames < 1:
            raise ValueError("epochs >= 0, batch_size >= 1 and frames >= 1 are required")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")

    def vocab_name(self) -> str:
        name = self.model.zeroshot_vocab if self.method == "zeroshot" else self.model.text_vocab
        return name.replace("{label}", self.label)

    def views(self) -> list[str]:
        """Cache views the method reads: the classified one first."""
        out = [self.model.classified_view]
        if self.method == "xmic":
            out += [v for v in self.model.conditioning_views if v not in out]
        return out

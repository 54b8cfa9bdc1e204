"""The training stage's config (``TrainConfig``), with docs/method.md §3–5 defaults.

Input: YAML file and ``--set key=value`` overrides (``model.xmic.alpha=1``, ``optim.lr=1e-4``; the keys of earlier releases migrate).
Output: a frozen dataclass, written to ``RUN/config.yaml`` and into every checkpoint.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from xmic.config import bounded
from xmic.train.methods import method as method_record

MAX_FRAMES = 1024  # T per segment; 16 in the paper, a cache holds at most a few hundred per segment
MAX_PROMPT_CONTEXT = 72  # CLIP's text context is 77 tokens: start, end and the class name need some
MAX_BATCH = 1 << 20


# a method's hyper-parameter as earlier releases recorded it (flat in ``model``) -> its group
MOVED = {**{k: ("xmic", k) for k in ("heads", "spatial_layers", "temporal_layers",
                                      "temporal_pool", "mlp_ratio", "out_hidden_ratio",
                                      "out_depth", "alpha")},
         "clip_adapter_ratio": ("clip_adapter", "ratio"),
         "clip_adapter_reduction": ("clip_adapter", "reduction"),
         "prompt_context": ("prompt", "context"), "prompt_init": ("prompt", "init"),
         "text_batch": ("prompt", "text_batch"), "recompute_text": ("prompt", "recompute_text"),
         "meta_net_ratio": ("cocoop", "meta_net_ratio")}


def migrate_config(d: dict) -> dict:
    """A training config (whole, or one layer of it: a YAML file, a ``--set``) as earlier
    releases wrote it, in today's keys: ``log_tensorboard`` became ``log.tensorboard``, and each
    method's hyper-parameters moved from ``model`` into the method's group (``model.alpha`` ->
    ``model.xmic.alpha``, ``model.prompt_init`` -> ``model.prompt.init``; ``MOVED``)."""
    if not isinstance(d, dict):
        return d
    d = dict(d)
    if "log_tensorboard" in d:
        d["log"] = {**d.get("log", {}), "tensorboard": bool(d.pop("log_tensorboard"))}
    if isinstance(d.get("model"), dict) and any(k in MOVED for k in d["model"]):
        model = dict(d["model"])
        for old, (group, key) in MOVED.items():
            if old in model:
                model[group] = {**(model.get(group) or {}), key: model.pop(old)}
        d["model"] = model
    return d


def todays_record(d: dict, where: str) -> dict:
    """A recorded training config (a checkpoint's, a grid's) as this release records the same
    run: migrated, defaults filled in for fields added since, unused groups left out."""
    from xmic.config import config_to_dict, from_dict
    return config_to_dict(from_dict(TrainConfig, migrate_config(d), where))


def _positive(**values) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True)
class XMICConfig:
    """X-MIC's adapter (docs/method.md §3)."""
    heads: int = bounded(4, 1, 64)
    spatial_layers: int = bounded(1, 0, 32)
    temporal_layers: int = bounded(2, 0, 32)
    temporal_pool: Literal["attention", "mean"] = "attention"
    mlp_ratio: float = bounded(0.25, 0.0, 16.0)         # block MLP D' -> D'/4 -> D'
    out_hidden_ratio: float = bounded(0.0625, 0.0, 16.0)  # output MLP D' -> D'/16 -> D
    out_depth: int = bounded(2, 1, 16)
    alpha: float = bounded(2.0, 0.0, 1e6)

    def __post_init__(self):
        if self.out_depth < 1 or self.heads < 1 or self.temporal_layers < 0 or self.spatial_layers < 0:
            raise ValueError("out_depth and heads must be >= 1; layer counts >= 0")
        _positive(mlp_ratio=self.mlp_ratio, out_hidden_ratio=self.out_hidden_ratio,
                  alpha=self.alpha)


@dataclass(frozen=True)
class ClipAdapterConfig:
    """CLIP-Adapter's residual bottleneck."""
    ratio: float = bounded(0.2, 0.0, 1.0)
    reduction: int = bounded(4, 1, 4096)

    def __post_init__(self):
        _positive(ratio=self.ratio, reduction=self.reduction)


@dataclass(frozen=True)
class PromptConfig:
    """Prompt learning (CoOp, CoCoOp): M context vectors before the class name, initialised with
    ``init``'s token embeddings in the last positions and N(0, 0.02) before ("" = all random)."""
    context: int = bounded(16, 1, MAX_PROMPT_CONTEXT)
    init: str = "a photo of a"
    # text-encoder sequences per pass (CoCoOp runs B x C of them per step: lower it to fit memory)
    text_batch: int = bounded(1024, 1, MAX_BATCH)
    # keep no text-encoder activations for backward, recompute them (auto: CoCoOp only)
    recompute_text: Literal["auto", "always", "never"] = "auto"

    def __post_init__(self):
        if self.context < 1 or self.text_batch < 1:
            raise ValueError(f"context and text_batch must be >= 1, got {self.context}, "
                             f"{self.text_batch}")


@dataclass(frozen=True)
class CoCoOpConfig:
    meta_net_ratio: float = bounded(0.0625, 0.0, 16.0)  # meta-net D -> D/16 -> text width

    def __post_init__(self):
        _positive(meta_net_ratio=self.meta_net_ratio)


@dataclass(frozen=True)
class TextTowerConfig:
    """The frozen text tower a prompt method runs: by default ("") the model and weights that
    made the vocabulary (recorded in it); a model name and a weights file, ``local-dir:`` or
    pretrained tag when they are elsewhere. Its identity is checked against the vocabulary's."""
    model: str = ""
    weights: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """What every method shares, and one group per method family (a run records only the
    groups its method reads: ``Method.config_groups``)."""
    # Encoder I: the cache view whose frames are classified (v̂).
    classified_view: str = "hand_crop"
    # Encoder II: the adapter's input views, in order (hand crop, full frame). One view = the
    # "no hand crops" ablation (temporal step only).
    conditioning_views: tuple[str, ...] = ("hand_crop", "full_frame")
    train_logit_scale: bool = True   # the released code trains (and weight-decays) ℓ
    logit_scale_init: float = bounded(math.log(100.0), -100.0, 100.0)
    # vocabulary names in the cache; "{label}" becomes noun or verb
    text_vocab: str = "{label}"
    zeroshot_vocab: str = "{label}.photo"  # prompt "a photo of a {}" (docs/method.md §5)
    xmic: XMICConfig = field(default_factory=XMICConfig)
    clip_adapter: ClipAdapterConfig = field(default_factory=ClipAdapterConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    cocoop: CoCoOpConfig = field(default_factory=CoCoOpConfig)
    text_tower: TextTowerConfig = field(default_factory=TextTowerConfig)

    def __post_init__(self):
        if not self.conditioning_views:
            raise ValueError("conditioning_views must name at least one view")
        if not math.isfinite(self.logit_scale_init):
            raise ValueError(f"logit_scale_init must be finite, got {self.logit_scale_init!r}")


GROUPS = ("xmic", "clip_adapter", "prompt", "cocoop", "text_tower")  # ModelConfig's per-method groups


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_epochs: float = bounded(5.0, 0.0, 100_000.0)
    warmup_start_lr: float = 1e-7

    def __post_init__(self):
        _positive(lr=self.lr, warmup_start_lr=self.warmup_start_lr)
        if self.warmup_start_lr > self.lr:
            raise ValueError(f"warmup_start_lr {self.warmup_start_lr!r} must be at most lr "
                             f"{self.lr!r}: the warm-up rises from it to lr")
        if len(self.betas) != 2 or not all(math.isfinite(b) and 0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise ValueError(f"warmup_epochs must be a finite number >= 0, got {self.warmup_epochs!r}")


@dataclass(frozen=True)
class LogConfig:
    """Where training is tracked besides RUN/train.log and RUN/metrics.jsonl (optional extras)."""
    tensorboard: bool = False   # RUN/tensorboard/ (pip install 'xmic[tensorboard]')
    wandb: bool = False         # Weights & Biases in RUN/wandb/ (pip install 'xmic[wandb]')
    wandb_project: str = "xmic"
    # offline (clusters often are; `wandb sync RUN/wandb/offline-run-*` later), unless set here
    # or by the WANDB_MODE environment variable
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    group: str = ""             # runs logged together (a grid sets its name)

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", self.wandb_project):
            raise ValueError(f"log.wandb_project {self.wandb_project!r} must be a plain name "
                             "(letters, digits, '_', '.', '-'; no '/')")


@dataclass(frozen=True)
class ClassesConfig:
    """Which classes a run trains on: all, or the base half of the base-to-novel protocol
    (``xmic.train.class_split``: CoOp's rule ``id-half``, the most frequent half ``frequency``,
    or ``lists`` from ``LISTS/base_LABEL.txt`` and ``novel_LABEL.txt``)."""
    train_on: Literal["all", "base"] = "all"
    rule: Literal["id-half", "frequency", "lists"] = "id-half"
    lists: str = ""  # a folder of base_{label}.txt / novel_{label}.txt (rule lists)


@dataclass(frozen=True)
class TrainConfig:
    method: str = "xmic"  # a name of xmic.train.methods.METHODS
    label: Literal["noun", "verb"] = "noun"
    split: str = "train"
    epochs: int = bounded(15, 0, 100_000)
    batch_size: int = bounded(128, 1, MAX_BATCH)
    frames: int = bounded(16, 1, MAX_FRAMES)
    seed: int = bounded(0, 0, 2**32 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True                  # mixed precision on a GPU; always fp32 on the CPU
    amp_dtype: Literal["fp16", "bf16"] = "fp16"  # bf16: no loss scaling (GPUs that have it)
    compile: bool = False             # torch.compile the model for training steps
    # model selection on held-out source videos (0 = keep the last epoch)
    heldout_fraction: float = 0.1
    # the released behaviour: select the epoch on a target set ("CACHE:SPLIT"); this uses test data
    select_on_target_test_data: str | None = None
    eval_batch_size: int = bounded(512, 1, MAX_BATCH)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    classes: ClassesConfig = field(default_factory=ClassesConfig)

    def __post_init__(self):
        method_record(self.method)  # an unknown method is refused, naming the known ones
        if self.epochs < 0 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"epochs >= 0, batch_size >= 1 and eval_batch_size >= 1 are required, "
                             f"got {self.epochs}, {self.batch_size}, {self.eval_batch_size}")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames must be in 1..{MAX_FRAMES} per segment, got {self.frames}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.classes.train_on == "base" and not self.record.open_vocabulary:
            raise ValueError(f"classes.train_on=base: {self.method} has a classifier of its "
                             "training classes only, so it cannot score novel classes; "
                             "base-to-novel needs a method that reads class names")
        if (self.classes.rule == "lists") != bool(self.classes.lists):
            raise ValueError("classes.rule=lists goes with classes.lists=FOLDER (and only then)")
        vocab = self.vocab_name()
        if vocab != self.label and not vocab.startswith(f"{self.label}."):
            raise ValueError(f"model.{self.record.vocab} names vocabulary {vocab!r}, not one of "
                             f"label {self.label!r} ({self.label} or {self.label}.SUFFIX): "
                             f"{self.label} ids would be scored against another label's names")

    @staticmethod
    def migrate(d: dict) -> dict:
        return migrate_config(d)

    def recorded(self, d: dict) -> dict:
        """What a run records of its config (``config_to_dict``): the model groups its method
        reads, not the others' (a linear probe records no ``alpha``)."""
        keep = self.record.config_groups
        d["model"] = {k: v for k, v in d["model"].items() if k not in GROUPS or k in keep}
        if d.get("classes", {}).get("train_on") == "all":
            d.pop("classes")  # every class: as runs recorded before base-to-novel existed
        return d

    def autocast_dtype(self, device):
        """The autocast dtype on ``device`` (None: full fp32, as on the CPU)."""
        import torch
        if not (self.amp and torch.device(device).type == "cuda"):
            return None
        return torch.bfloat16 if self.amp_dtype == "bf16" else torch.float16

    @property
    def record(self):
        """This run's method record (``xmic.train.methods``)."""
        return method_record(self.method)

    def vocab_name(self) -> str:
        return getattr(self.model, self.record.vocab).replace("{label}", self.label)

    def feeds(self) -> tuple[str, list[str] | None]:
        """The one rule of what the model reads: the classified view (its frames are ``f``)
        and, for a method conditioned on Encoder II, the conditioning views stacked into ``x``
        (else None). Training, inference, the Python API and predict all ask here."""
        cond = list(self.model.conditioning_views) if self.record.conditioning else None
        return self.model.classified_view, cond

    def views(self) -> list[str]:
        """Cache views the method reads: the classified one first."""
        cls, cond = self.feeds()
        return [cls] + [v for v in cond or [] if v != cls]

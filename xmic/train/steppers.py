"""Steppers: what owns a run's optimisation step, and the one epoch function that drives them.

Inputs: the members' ``TrainConfig``s and models (one member for a run trained alone), the
training bank and the class input w. Outputs: ``ModelStepper`` (one model, its AdamW, warm-up
schedule, gradient scaler and sampling generator; ``torch.compile`` when asked) and, in
``xmic.train.stacked``, ``StackedStepper`` (several seeds as one ``vmap``-ed model). Both offer
``gens`` (one sampling generator per member), ``lr``, ``step(drawn, w)`` (each member's loss
[S], logits [S, B, C] and labels [S, B]), ``member(s)`` (member s as a plain model),
``member_state(s)`` (what its checkpoint holds of the training state) and ``nonfinite(s)``.
``run_epoch`` trains one pass for every member: each draws its own batches from its own seeded
generator exactly as a run alone draws them, losses stay on the device and are read once at the
epoch's end, and a non-finite loss or weight stops the run with ``TrainingDiverged`` (epoch,
step, member and cause) before anything of the epoch is saved. AdamW with linear warm-up then
constant lr (docs/method.md §4); fp16 autocast + gradient scaling (or bf16) on a GPU.
"""
from __future__ import annotations

import os
import shutil
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from xmic.config import ConfigError, XmicError
from xmic.train.config import TrainConfig
from xmic.train.data import batch


class TrainingDiverged(XmicError):
    """The loss or the weights stopped being finite; the run is not saved past its last good epoch."""
    exit_code = 1


DIVERGED_ADVICE = "nothing of this epoch was saved; lower optim.lr or check the features"


def train_step(model, opt, sched, scaler, f, x, y, w, amp):
    """One optimisation step on a batch; returns (loss, logits). ``amp``: the autocast dtype
    (float16, with the scaler; bfloat16) or None."""
    with torch.autocast(f.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(f, x, w)
        loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    sched.step()
    return loss, logits


def _lr_factor(step: int, warmup_steps: float, lr: float, start: float) -> float:
    if step >= warmup_steps:
        return 1.0
    return (start + (lr - start) * step / warmup_steps) / lr


def make_optimiser(model, cfg: TrainConfig, train_segments: int, device):
    """(trainable params, AdamW or None, warm-up scheduler or None, grad scaler, the autocast
    dtype or None)."""
    params = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = -(-train_segments // cfg.batch_size)
    opt = (torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                             weight_decay=cfg.optim.weight_decay) if params else None)
    warmup = cfg.optim.warmup_epochs * steps_per_epoch
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(
        s, warmup, cfg.optim.lr, cfg.optim.warmup_start_lr)) if opt else None)
    amp = cfg.autocast_dtype(device)
    if amp is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp_dtype=bf16: this GPU has no bfloat16; use amp_dtype=fp16")
    return (params, opt, sched, torch.amp.GradScaler("cuda", enabled=amp is torch.float16),
            amp)


def compiled(model, cfg: TrainConfig):
    """``torch.compile(model)`` when ``cfg.compile`` (its parameters are the model's own, so
    checkpoints and evaluation use the plain model), else the model."""
    if not cfg.compile:
        return model
    if next(model.parameters()).device.type == "cpu" and not any(
            shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        raise ConfigError("compile=true on the CPU needs a C++ compiler (g++ or clang++) for "
                          "torch.compile's kernels; install one or leave compile=false")
    return torch.compile(model, dynamic=False)  # compiles at the first step


class ModelStepper:
    """One run's model and training state: a stack of one."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, train_segments: int, device):
        self.cfgs, self.model = [cfg], model
        params, self.opt, self.sched, self.scaler, self.amp = make_optimiser(
            model, cfg, train_segments, device)
        self.trains = bool(params)
        self.stepped = compiled(model, cfg) if params else model  # same weights
        self.gens = [torch.Generator(device=device).manual_seed(cfg.seed)]

    def __len__(self) -> int:
        return 1

    @property
    def lr(self) -> float | None:
        return self.opt.param_groups[0]["lr"] if self.opt else None

    def step(self, drawn: list[tuple], w: torch.Tensor):
        if not self.model.training:  # scored in eval mode after the last epoch
            self.model.train()
        f, x, y = drawn[0]
        loss, logits = train_step(self.stepped, self.opt, self.sched, self.scaler, f, x, y, w,
                                  self.amp)
        return loss[None], logits[None], y[None]                        # [1], [1, B, C], [1, B]

    def member(self, s: int) -> torch.nn.Module:
        return self.model

    def member_state(self, s: int) -> dict:
        return {"model": self.model.state_dict(),
                "optimizer": self.opt.state_dict() if self.opt else {},
                "scaler": self.scaler.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else {},
                "generator": self.gens[0].get_state()}

    def load_member(self, s: int, ck: dict) -> None:
        """A checkpoint's training state (the model's weights are loaded by the caller, with
        their shapes checked)."""
        if self.opt:
            self.opt.load_state_dict(ck["optimizer"])
            self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.gens[0].set_state(ck["generator"])

    def nonfinite(self, s: int) -> list[str]:
        """Names of parameters holding NaN or Inf."""
        return [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]


def run_epoch(stepper, bank, w: torch.Tensor, cfg: TrainConfig, epoch: int, where: str):
    """One pass over ``bank`` for every member, each in its own seeded random order: per member
    (train loss, top-1, samples/s), each step's loss [steps, S] and each step's lr. Raises
    ``TrainingDiverged`` on a non-finite loss (naming its step and member) or weight."""
    t0 = time.time()
    classified, cond = cfg.feeds()
    S, device = len(stepper), bank.labels.device
    orders = [torch.randperm(len(bank), generator=g, device=device) for g in stepper.gens]
    steps = -(-len(bank) // cfg.batch_size)
    losses, lrs, sizes = [], [], []
    correct = torch.zeros(S, dtype=torch.long, device=device)
    bar = tqdm(zip(*(o.split(cfg.batch_size) for o in orders)), total=steps, disable=None,
               desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
    for segs in bar:
        drawn = [batch(bank, seg, classified, cond, cfg.frames, g, train=True)
                 for seg, g in zip(segs, stepper.gens)]
        lrs.append(stepper.lr)  # the step's own lr (a host value: no sync)
        each, logits, y = stepper.step(drawn, w)                       # [S], [S, B, C], [S, B]
        losses.append(each.detach())
        correct += (logits.argmax(-1) == y).sum(-1)
        sizes.append(len(segs[0]))
    values = torch.stack(losses).float().cpu()                          # [steps, S]
    seeds = [c.seed for c in stepper.cfgs]
    who = (lambda s: f", seed {seeds[s]}" if S > 1 else "")
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        k, s = int(bad[0][0]), int(bad[0][1])
        raise TrainingDiverged(
            f"{where}: training diverged at epoch {epoch}, step {k + 1}/{steps}{who(s)}: the "
            f"loss is {values[k, s].item()} (lr {lrs[k]:.3g}); {DIVERGED_ADVICE}")
    for s in range(S):
        names = stepper.nonfinite(s)
        if names:
            raise TrainingDiverged(f"{where}: training diverged at epoch {epoch}{who(s)}: "
                                   f"non-finite weights in {names[:5]}; {DIVERGED_ADVICE}")
    seen, seconds = sum(sizes), time.time() - t0
    totals = (values * torch.tensor(sizes, dtype=torch.float32)[:, None]).sum(0)   # [S]
    return ([{"train_loss": float(totals[s]) / seen, "train_top1": 100 * int(correct[s]) / seen,
              "samples_per_s": seen / seconds} for s in range(S)], values, lrs)

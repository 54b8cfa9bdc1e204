"""``train``: fit one method on one cache split, with held-out model selection.

Inputs: a cache path, a ``TrainConfig``, an output folder (and ``resume``). Outputs in the folder:
``config.yaml``; ``last.pt`` (every epoch: model, optimizer, scheduler, scaler, RNG state, history,
config, fingerprints) and ``checkpoint.pt`` (the selected epoch); ``metrics.jsonl`` (one row per
epoch); ``train_curve.png``. Returns a summary dict. AdamW with linear warm-up then constant lr
(docs/method.md §4), fp16 autocast + gradient scaling (or bf16) on a GPU, fp32 on the CPU; the sampling generator is
seeded, so CPU runs repeat exactly, also across ``resume``. A non-finite loss or weight stops the
run with ``TrainingDiverged`` (epoch, step and cause) before anything of that epoch is saved.
Files are written through ``xmic.files.atomic`` (never through a link planted in the run folder).
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
from dataclasses import dataclass
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from xmic.cache import Cache
from xmic.files.atomic import write_bytes_atomic, write_text_atomic
from xmic.config import ConfigError, XmicError, config_to_dict, dump_config, resolve_device
from xmic.train.build import build_model, check_inputs, load_tower, model_dims, text_input
from xmic.train.checkpoint import (CheckpointError, check_checkpoint, check_resumable,
                                   load_checkpoint, load_model_state, save_checkpoint)
from xmic.train.config import TrainConfig
from xmic.train.prompt_model import PROMPT_FORMAT
from xmic.train.run_folder import (CHECKPOINT, CONFIG, CURVE, FOREIGN, LAST, METRICS,
                                   RunFolderError)
from xmic.train.data import batch, heldout_split, load_bank, sampling_notes
from xmic.train.inference import evaluate_bank
from xmic.train.plots import plot_curve
from xmic.train.tracking import Printer, Tracking
from xmic.provenance import provenance


class TrainingDiverged(XmicError):
    """The loss or the weights stopped being finite; the run is not saved past its last good epoch."""
    exit_code = 1


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


def nonfinite_parameters(model) -> list[str]:
    """Names of parameters holding NaN or Inf."""
    return [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]


def train_epoch(model, opt, sched, scaler, bank, w, cfg: TrainConfig, cond, gen, amp,
                epoch: int, where: str) -> tuple[dict, list[float], list[float]]:
    """One pass over ``bank`` in a seeded random order: (train loss, top-1 and samples/s; each
    step's loss; each step's lr). Losses and correct counts stay on the device and are read once,
    at the end: no step waits for the device. Raises ``TrainingDiverged`` on a non-finite loss
    (naming its step, found in that read) or weight (at the end); nothing of the epoch is saved."""
    t0 = time.time()
    model.train()
    order = torch.randperm(len(bank), generator=gen, device=bank.labels.device)
    steps = -(-len(bank) // cfg.batch_size)
    losses, lrs, sizes = [], [], []
    correct = torch.zeros((), dtype=torch.long, device=bank.labels.device)
    bar = tqdm(order.split(cfg.batch_size), total=steps, disable=None,
               desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
    for seg in bar:
        f, x, y = batch(bank, seg, cfg.feeds()[0], cond, cfg.frames, gen, train=True)
        lrs.append(opt.param_groups[0]["lr"])  # the step's own lr (a host value: no sync)
        loss, logits = train_step(model, opt, sched, scaler, f, x, y, w, amp)
        losses.append(loss.detach())
        correct += (logits.argmax(1) == y).sum()
        sizes.append(len(seg))
    values = torch.stack(losses).float().cpu()                                   # [steps]
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        k = int(bad[0])
        raise TrainingDiverged(
            f"{where}: training diverged at epoch {epoch}, step {k + 1}/{steps}: the loss is "
            f"{values[k].item()} (lr {lrs[k]:.3g}); nothing of this epoch was saved; lower "
            "optim.lr or check the features")
    bad = nonfinite_parameters(model)
    if bad:
        raise TrainingDiverged(
            f"{where}: training diverged at epoch {epoch}: non-finite weights in {bad[:5]}; "
            "nothing of this epoch was saved; lower optim.lr or check the features")
    seen = sum(sizes)
    total = float((values * torch.tensor(sizes, dtype=torch.float32)).sum())
    return ({"train_loss": total / seen, "train_top1": 100 * int(correct) / seen,
             "samples_per_s": seen / (time.time() - t0)}, values.tolist(), lrs)


@dataclass
class RunData:
    """What one run trains and selects on, loaded once (setup phase)."""
    full: object           # the split's FeatureBank
    train: object          # training segments
    held: object | None    # held-out videos (selection), or None
    target: tuple | None   # (bank, w) of the released behaviour's target set
    w: torch.Tensor        # [C, D] embeddings, or [C, L] prompt ids
    tower: object | None


def load_run_data(cache, cfg: TrainConfig, inputs, device, bank_loader, towers) -> RunData:
    views = cfg.views()
    full = bank_loader(cache, cfg.split, views, cfg.label, len(inputs.vocab.classes), device,
                       cfg.frames, inputs.vocab.label_offset)
    tr_idx, ho_idx = heldout_split(full.video_ids, cfg.heldout_fraction)
    tower = load_tower(cfg, inputs.vocab.fingerprint, inputs.vocab.source, device, towers)
    w = text_input(cfg, inputs.vocab.names, inputs.vocab.embeddings, tower, device)  # [C, D|L]
    target = (_target_bank(cfg, inputs, views, device, tower) if cfg.select_on_target_test_data
              else None)
    return RunData(full, full.subset(tr_idx), full.subset(ho_idx) if len(ho_idx) else None,
                   target, w, tower)


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


def score_epoch(model, data: RunData, cfg: TrainConfig, row: dict, where: Path) -> None:
    """Held-out (and, with the released behaviour, target) top-1 and loss into ``row``; a
    non-finite held-out loss is a divergence."""
    if data.held is not None:
        m = evaluate_bank(model, data.held, data.w, cfg)
        row.update(heldout_top1=m["top1"], heldout_loss=m["loss"])
        if not (math.isfinite(m["loss"]) and math.isfinite(m["top1"])):
            raise TrainingDiverged(
                f"{where}: training diverged at epoch {row['epoch']}: the held-out loss is "
                f"{m['loss']} (lr {row['lr']:.3g}); nothing of this epoch was saved; lower "
                "optim.lr or check the features")
    if data.target is not None:
        tm = evaluate_bank(model, data.target[0], data.target[1], cfg)
        row.update(target_top1=tm["top1"], target_loss=tm["loss"])


def restore(path: Path, config: dict, inputs, model, opt, sched, scaler, gen):
    """Resume from ``last.pt``: the states of model, optimiser, scheduler, scaler and sampling
    generator; returns (history, best, the next epoch)."""
    ck = check_checkpoint(load_checkpoint(path), path)
    check_resumable(ck, config, inputs.fingerprints, path)
    load_model_state(model, ck["model"], path)
    if opt:
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    scaler.load_state_dict(ck["scaler"])
    gen.set_state(ck["generator"])
    return ck["history"], ck["best"], ck["epoch"] + 1


def tower_record(tower) -> dict:
    """What a checkpoint records of a prompt method's text tower (nothing for the others)."""
    return ({"text_tower": tower.source, "prompt_format": PROMPT_FORMAT} if tower is not None
            else {"text_tower": None})


def log_epoch(row: dict, echo) -> None:
    echo("epoch {epoch}: ".format(**row) + ", ".join(
        f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))


def train(cache_path: str | Path, cfg: TrainConfig, out: str | Path, resume: bool = False,
          echo=print, bank_loader=load_bank, towers=None) -> dict:
    """``bank_loader``: ``load_bank`` or a caller's memo of it (a grid loads each cache once);
    ``towers``: how a prompt method's frozen text tower is loaded (default: the one that made
    the vocabulary; a grid's memo, or a loader bound to other weights)."""
    # ---- setup: the run folder first (seconds), then data, model, optimizer, resume state ---
    out = Path(out)
    check_run_folder(out, resume)
    echo = Printer(echo)  # printed, and kept in RUN/train.log once the folder exists
    cache = Cache.open(cache_path)
    inputs = check_inputs(cache, cfg)
    device = resolve_device(cfg.device)
    data = load_run_data(cache, cfg, inputs, device, bank_loader, towers)
    for note in sampling_notes(cache, cfg.views()):
        echo(f"NOTE: {note}")
    held_n = len(data.held) if data.held is not None else 0
    echo(f"{cfg.method} on {cache.root} split {cfg.split}: {len(data.train)} training segments, "
         f"{held_n} held out ({cfg.heldout_fraction:.0%} of videos), "
         f"{len(inputs.vocab.classes)} classes; skipped {sum(data.full.skipped.values())} "
         f"segment(s) {data.full.skipped or ''}; device {device}")
    torch.manual_seed(cfg.seed)
    dims = model_dims(cfg, inputs)
    model = build_model(cfg, dims["text"], dims["cond"], len(inputs.vocab.classes),
                        data.tower).to(device)
    params, opt, sched, scaler, amp = make_optimiser(model, cfg, len(data.train), device)
    stepped = compiled(model, cfg)  # what the training steps call; same weights
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    config = config_to_dict(cfg)
    history, best, start_epoch = [], None, 1
    out.mkdir(parents=True, exist_ok=True)  # the folder the user names may be a link
    tracking = Tracking(out, cfg, out.name)
    echo.keep(tracking.echo)
    if resume:
        history, best, start_epoch = restore(out / LAST, config, inputs, model, opt, sched,
                                             scaler, gen)
        echo(f"resuming after epoch {start_epoch - 1}")
    write_text_atomic(out / CONFIG, config_header() + dump_config(cfg), out)
    selected_on = selection_source(cfg, data)
    _, cond = cfg.feeds()
    context = checkpoint_context(cfg, inputs, cache, dims, selected_on, data.tower)
    if params and warmup_only(cfg):
        echo(f"WARNING: {warmup_only(cfg)}")
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    # ---- epochs: train, check, score, select, save -----------------------------------------
    try:
        for epoch in range(start_epoch, cfg.epochs + 1) if params else [0]:
            t0 = time.time()
            row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"] if opt else None}
            if params:
                stats, step_losses, step_lrs = train_epoch(stepped, opt, sched, scaler, data.train,
                                                           data.w, cfg, cond, gen, amp, epoch,
                                                           where=str(out))
                row.update(stats)
                tracking.steps((epoch - 1) * steps_per_epoch + 1, step_losses, step_lrs)
            score_epoch(model, data, cfg, row, out)
            best, row["selected"], row["selected_because"] = select_epoch(row, best, epoch)
            row["seconds"] = time.time() - t0
            history.append(row)
            state = {"model": model.state_dict(), "epoch": epoch, "history": history, "best": best,
                     "optimizer": opt.state_dict() if opt else {}, "scaler": scaler.state_dict(),
                     "scheduler": sched.state_dict() if sched else {}, "generator": gen.get_state(),
                     **context}
            save_epoch(out, state, row["selected"])
            tracking.epoch(row, max(epoch, 1) * steps_per_epoch)
            log_epoch(row, echo)
    except BaseException as e:
        tracking.echo(f"stopped: {type(e).__name__}: {e}")
        raise
    finally:
        tracking.close(best)
    # ---- the curve and the summary ----------------------------------------------------------
    write_curve(out, history, cfg, cache.dataset)
    return run_summary(out, best, selected_on, history, data)


def selection_source(cfg: TrainConfig, data: RunData) -> str:
    """What a run selects its epoch on (written into every checkpoint)."""
    return ("target test data " + cfg.select_on_target_test_data if data.target
            else "held-out source videos" if data.held is not None else "last epoch")


def checkpoint_context(cfg: TrainConfig, inputs, cache, dims: dict, selected_on: str,
                       tower) -> dict:
    """What every checkpoint of a run holds besides its training state."""
    return {"config": config_to_dict(cfg), "fingerprints": inputs.fingerprints,
            "method": cfg.method, "classes": inputs.vocab.classes, "selected_on": selected_on,
            "source_dataset": cache.dataset, "cache": str(cache.root), "dims": dims,
            "provenance": provenance(), **tower_record(tower)}


def save_epoch(out: Path, state: dict, selected: bool) -> None:
    """An epoch's files: ``last.pt``, ``checkpoint.pt`` when selected, ``metrics.jsonl``."""
    save_checkpoint(out / LAST, state)
    if selected:
        save_checkpoint(out / CHECKPOINT, state)
    write_text_atomic(out / METRICS, "".join(json_line(r) for r in state["history"]), out)


def write_curve(out: Path, history: list[dict], cfg: TrainConfig, dataset: str) -> None:
    png = io.BytesIO()
    plot_curve(history, png, f"{cfg.method} · {cfg.label} · {dataset} {cfg.split} · "
               f"seed {cfg.seed}")
    write_bytes_atomic(out / CURVE, png.getbuffer(), out)


def run_summary(out: Path, best, selected_on: str, history: list, data: RunData) -> dict:
    return {"out": str(out), "best": best, "selected_on": selected_on, "epochs": len(history),
            "skipped": data.full.skipped, "train_segments": len(data.train),
            "heldout_segments": len(data.held) if data.held is not None else 0}


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


def warmup_only(cfg: TrainConfig) -> str:
    """Why a run would train only inside its learning-rate warm-up ('' when it does not)."""
    if 0 < cfg.epochs <= cfg.optim.warmup_epochs:
        return (f"epochs={cfg.epochs} <= optim.warmup_epochs={cfg.optim.warmup_epochs:g}: every "
                f"epoch trains inside the learning-rate warm-up (from "
                f"{cfg.optim.warmup_start_lr:g}); raise epochs or lower optim.warmup_epochs")
    return ""


def select_epoch(row: dict, best: dict | None, epoch: int) -> tuple[dict | None, bool, str]:
    """Model selection: the higher selection top-1 (held-out, or the target's with the released
    behaviour, whose ties keep the earlier epoch: Dassl's ``is_best = curr > best``); a held-out
    tie goes to the lower loss, then to the later epoch. Returns (best, selected, why)."""
    if "target_top1" in row:
        score, loss, on = row["target_top1"], row["target_loss"], "target"
    elif "heldout_top1" in row:
        score, loss, on = row["heldout_top1"], row["heldout_loss"], "held-out"
    else:
        return {"epoch": epoch, "score": epoch, "loss": None}, True, "last epoch (no selection set)"
    if not math.isfinite(score):
        return best, False, f"{on} top-1 is not finite"
    new = {"epoch": epoch, "score": score, "loss": loss}
    if best is None:
        return new, True, f"first epoch scored ({on} top-1 {score:.2f})"
    old_loss = best.get("loss")
    old_loss = math.inf if old_loss is None else old_loss
    if score == best["score"] and on == "target":  # the released rule: strictly better only
        return best, False, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}): the released "
                             "trainer keeps the earlier epoch")
    if score != best["score"]:
        if score > best["score"]:
            return new, True, f"{on} top-1 {score:.2f} > {best['score']:.2f} (epoch {best['epoch']})"
        return best, False, f"{on} top-1 {score:.2f} < {best['score']:.2f} (epoch {best['epoch']})"
    if loss != old_loss:
        if loss < old_loss:
            return new, True, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}); {on} loss "
                               f"{loss:.4g} < {old_loss:.4g}")
        return best, False, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}); {on} loss "
                             f"{loss:.4g} >= {old_loss:.4g}")
    return new, True, f"{on} top-1 and loss tie epoch {best['epoch']}: the later epoch"


def check_run_folder(out: Path, resume: bool) -> None:
    """The run folder before anything is loaded: a folder, not a cache's or a grid's, holding a
    run exactly when resuming one."""
    if out.is_file():
        raise RunFolderError(f"--out {out} is a file; give a folder for the run")
    for marker, what in FOREIGN.items():
        if (out / marker).exists():
            raise RunFolderError(f"--out {out} is {what} folder; give a folder of its own for the run")
    if resume and not (out / LAST).exists():
        raise CheckpointError(f"{out / LAST}: checkpoint not found; nothing to resume")
    if not resume and (out / LAST).exists():
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it, or "
                              "choose another --out")


def json_line(row: dict) -> str:
    """One metrics.jsonl line, always valid JSON: a non-finite number is written as null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def config_header() -> str:
    """config.yaml's first lines: what wrote it (the version, and a checkout's commit)."""
    p = provenance()
    return (f"# written by xmic {p['version']}" + (f", commit {p['commit']}" if p["commit"] else "")
            + "\n")


def _target_bank(cfg: TrainConfig, inputs, views: list[str], device, tower):
    """The released behaviour's selection set (test data of a target cache): (bank, w)."""
    tcache_path, _, tsplit = cfg.select_on_target_test_data.rpartition(":")
    tcache = Cache.open(tcache_path)
    tin = check_inputs(tcache, cfg)
    if not cfg.record.open_vocabulary and tin.vocab.classes != inputs.vocab.classes:
        raise ConfigError(f"method {cfg.method} scores only its training classes; it cannot "
                        "select on a target with another vocabulary")
    return (load_bank(tcache, tsplit, views, cfg.label, len(tin.vocab.classes), device,
                      cfg.frames, tin.vocab.label_offset),
            text_input(cfg, tin.vocab.names, tin.vocab.embeddings, tower, device))

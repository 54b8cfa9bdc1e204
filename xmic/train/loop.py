"""``fit``: train one method on one cache split, with held-out model selection, as one run or
as several seeds stacked into one model; ``train`` is a stack of one.

Inputs: a cache path, the members' ``TrainConfig``s (identical but for ``seed`` when more than
one), one output folder each (and ``resume``, for a run alone). Outputs, per folder, what
``xmic.train.run_record`` writes (``config.yaml``, ``last.pt`` every epoch with model,
optimizer, scheduler, scaler, RNG state, history, config and fingerprints, ``checkpoint.pt`` at
the selected epoch, ``metrics.jsonl``, ``train.log``, ``train_curve.png``) and its summary.
Phases: the folders, the data (one bank in memory, whatever the number of members), the models
(each drawn from its own seed, as its run alone draws it), a stepper (``xmic.train.steppers``:
one model; or ``xmic.train.stacked``), then per epoch: train (``run_epoch``), score, select,
save, log. The sampling generators are seeded, so CPU runs repeat exactly, also across
``resume``; a stacked member resumes alone. A non-finite loss, weight or held-out loss stops the
run with ``TrainingDiverged`` before anything of that epoch is saved.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from xmic.cache import Cache
from xmic.config import ConfigError, XmicError, config_to_dict, resolve_device
from xmic.train.build import build_model, check_inputs, load_tower, model_dims, text_input
from xmic.train.checkpoint import load_model_state
from xmic.train.config import TrainConfig
from xmic.train.class_split import make_split
from xmic.train.data import heldout_split, load_bank, restrict, sampling_notes
from xmic.train.inference import evaluate_bank
from xmic.train.prompt_model import PROMPT_FORMAT
from xmic.train.run_folder import LAST
from xmic.train.run_record import RunRecord
from xmic.train.stacked import StackedStepper
from xmic.train.steppers import DIVERGED_ADVICE, ModelStepper, TrainingDiverged, run_epoch
from xmic.train.tracking import Printer
from xmic.provenance import provenance

__all__ = ["fit", "train", "TrainingDiverged", "TrainingInterrupted", "warmup_only"]


class TrainingInterrupted(XmicError):
    """Ctrl-C (or SIGINT) during training: the last finished epoch is kept in last.pt."""
    exit_code = 130


def train(cache_path: str | Path, cfg: TrainConfig, out: str | Path, resume: bool = False,
          echo=print, bank_loader=load_bank) -> dict:
    """One run: ``fit`` with one member. Returns its summary."""
    return fit(cache_path, [cfg], [out], resume, echo, bank_loader)[0]


def fit(cache_path: str | Path, cfgs: list[TrainConfig], outs: list, resume: bool = False,
        echo=print, bank_loader=load_bank) -> list[dict]:
    """``bank_loader``: ``load_bank`` or a caller's memo of it (a grid loads each cache once).
    A prompt method's frozen text tower is the one ``model.text_tower`` names (by default the
    one that made the vocabulary), loaded once per process."""
    # ---- setup: the run folders first (seconds), then data, models, stepper, resume state ---
    cfg = cfgs[0]
    if len(cfgs) > 1 and resume:
        raise ValueError("stacked seeds start fresh; resume each run alone")
    records = [RunRecord(out, c, resume) for c, out in zip(cfgs, outs, strict=True)]
    shout = Printer(echo)  # printed, and kept in each RUN/train.log once the folders exist
    cache = Cache.open(cache_path)
    inputs = check_inputs(cache, cfg)
    device = resolve_device(cfg.device)
    data = load_run_data(cache, cfg, inputs, device, bank_loader)
    inputs = replace(inputs, vocab=data.vocab)  # base-to-novel: the base classes only
    for note in sampling_notes(cache, cfg.views()):
        shout(f"NOTE: {note}")
    shout(run_line(cfg, cfgs, cache, data, inputs, device))
    dims = model_dims(cfg, inputs)
    stepper = make_stepper(cfgs, dims, len(inputs.vocab.classes), data, device)
    selected_on = selection_source(cfg, data)
    for rec in records:
        rec.open({**checkpoint_context(rec.cfg, inputs, cache, dims, selected_on, data.tower),
                  **({"class_split": data.split.record()} if data.split is not None else {})})
    shout.keep(lambda line: [r.tracking.echo(line) for r in records])
    start_epoch = restore(records[0], stepper, inputs, shout) if resume else 1
    for rec in records:
        rec.write_config()
    if stepper.trains and warmup_only(cfg):
        shout(f"WARNING: {warmup_only(cfg)}")
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    where = ", ".join(str(r.out) for r in records)
    # ---- epochs: train, check, score, select, save ------------------------------------------
    try:
        for epoch in range(start_epoch, cfg.epochs + 1) if stepper.trains else [0]:
            t0, lr = time.time(), stepper.lr
            if stepper.trains:
                stats, step_losses, step_lrs = run_epoch(stepper, data.train, data.w, cfg, epoch,
                                                         where)
            for s, rec in enumerate(records):
                row = {"epoch": epoch, "lr": lr}
                if stepper.trains:
                    row.update(stats[s])
                    rec.steps(epoch, steps_per_epoch, step_losses[:, s].tolist(), step_lrs)
                score_epoch(stepper.member(s), data, rec.cfg, row, rec.out)
                rec.record(row, stepper.member_state(s), t0, steps_per_epoch,
                           lambda line, r=rec: (echo(line), r.tracking.echo(line)))
    except BaseException as e:
        for rec in records:
            rec.stopped(e)
        raise
    finally:
        for rec in records:
            rec.close()
    # ---- the curves and the summaries ---------------------------------------------------------
    for rec in records:
        rec.write_curve(cache.dataset)
    return [rec.summary(selected_on, data) for rec in records]


def make_stepper(cfgs: list[TrainConfig], dims: dict, classes: int, data: RunData, device):
    """A run alone: ``ModelStepper``; several seeds: ``StackedStepper``. Each member's initial
    weights are drawn from its own seed, as its run alone draws them."""
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(build_model(c, dims["text"], dims["cond"], classes, data.tower).to(device))
    if len(cfgs) == 1:
        return ModelStepper(cfgs[0], models[0], len(data.train), device)
    return StackedStepper(cfgs, models, len(data.train), device)


def restore(rec: RunRecord, stepper: ModelStepper, inputs, echo) -> int:
    """A run alone continued from its ``last.pt``: weights (shapes checked) and training state;
    returns the next epoch."""
    ck = rec.resume(inputs.fingerprints)
    load_model_state(stepper.model, ck["model"], rec.out / LAST)
    stepper.load_member(0, ck)
    echo(f"resuming after epoch {ck['epoch']}")
    return ck["epoch"] + 1


def run_line(cfg: TrainConfig, cfgs: list, cache, data, inputs, device) -> str:
    """What a run trains on, printed first."""
    held_n = len(data.held) if data.held is not None else 0
    videos = len(set(data.full.recordings))
    held_v = len(set(data.held.recordings)) if data.held is not None else 0
    stacked = (f"; seeds {[c.seed for c in cfgs]} as one stacked model" if len(cfgs) > 1
               else "")
    if data.split is not None:
        stacked += (f"; base-to-novel ({data.split.rule}): trains on {len(data.split.base)} base "
                    f"classes, {len(data.split.novel)} novel held back")
    return (f"{cfg.method} on {cache.root} split {cfg.split}: {len(data.train)} training "
            f"segments, {held_n} held out ({held_n / max(len(data.full), 1):.0%} of the "
            f"segments: {held_v} of {videos} recordings), "
            f"{len(inputs.vocab.classes)} classes; skipped {sum(data.full.skipped.values())} "
            f"segment(s) {data.full.skipped or ''}; device {device}{stacked}")


@dataclass
class RunData:
    """What one run trains and selects on, loaded once (setup phase)."""
    full: object           # the split's FeatureBank
    train: object          # training segments
    held: object | None    # held-out videos (selection), or None
    target: tuple | None   # (bank, w) of the released behaviour's target set
    w: torch.Tensor        # [C, D] embeddings, or [C, L] prompt ids
    tower: object | None
    vocab: object          # the classes the model scores (base-to-novel: the base part)
    split: object | None = None  # base-to-novel: the ClassSplit (the data is its base part)


def load_run_data(cache, cfg: TrainConfig, inputs, device, bank_loader) -> RunData:
    views = cfg.views()
    full = bank_loader(cache, cfg.split, views, cfg.label, len(inputs.vocab.classes), device,
                       cfg.frames, inputs.vocab.label_offset)
    split, vocab = None, inputs.vocab
    if cfg.classes.train_on == "base":  # base-to-novel: base-class segments, base classifier
        split = make_split(vocab.classes, full.labels.cpu().numpy(), cfg.classes, cfg.label)
        vocab = split.vocab(vocab, "base")
        full = restrict(full, split.ids(inputs.vocab.classes, "base"))
    tr_idx, ho_idx = heldout_split(full.recordings, cfg.heldout_fraction)
    tower = load_tower(cfg, vocab.fingerprint, vocab.source, device)
    w = text_input(cfg, vocab.names, vocab.embeddings, tower, device)  # [C, D|L]
    target = (_target_bank(cfg, inputs, views, device, tower) if cfg.select_on_target_test_data
              else None)
    return RunData(full, full.subset(tr_idx), full.subset(ho_idx) if len(ho_idx) else None,
                   target, w, tower, vocab, split)


def score_epoch(model, data: RunData, cfg: TrainConfig, row: dict, where: Path) -> None:
    """Held-out (and, with the released behaviour, target) top-1 and loss into ``row``; a
    non-finite held-out loss is a divergence."""
    if data.held is not None:
        m = evaluate_bank(model, data.held, data.w, cfg)
        row.update(heldout_top1=m["top1"], heldout_loss=m["loss"])
        if not (math.isfinite(m["loss"]) and math.isfinite(m["top1"])):
            raise TrainingDiverged(
                f"{where}: training diverged at epoch {row['epoch']}: the held-out loss is "
                f"{m['loss']} (lr {row['lr']:.3g}); {DIVERGED_ADVICE}")
    if data.target is not None:
        tm = evaluate_bank(model, data.target[0], data.target[1], cfg)
        row.update(target_top1=tm["top1"], target_loss=tm["loss"])


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


def tower_record(tower) -> dict:
    """What a checkpoint records of a prompt method's text tower (nothing for the others)."""
    return ({"text_tower": tower.source, "prompt_format": PROMPT_FORMAT} if tower is not None
            else {"text_tower": None})


def warmup_only(cfg: TrainConfig) -> str:
    """Why a run would train only inside its learning-rate warm-up ('' when it does not)."""
    if 0 < cfg.epochs <= cfg.optim.warmup_epochs:
        return (f"epochs={cfg.epochs} <= optim.warmup_epochs={cfg.optim.warmup_epochs:g}: every "
                f"epoch trains inside the learning-rate warm-up (from "
                f"{cfg.optim.warmup_start_lr:g}); raise epochs or lower optim.warmup_epochs")
    return ""


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

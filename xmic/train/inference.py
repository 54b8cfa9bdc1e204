"""Inference with a model: the device, logits of a feature bank, one clip's scores.

Inputs: a device name; a model with a ``FeatureBank`` and class embeddings w [C, D]; or a run
folder (``checkpoint.pt``) and per view one clip's frame embeddings [n, D]. Outputs: a
``torch.device``; logits [S, C] at the 16 bin centres (docs/method.md §2); top-1 and loss of a bank;
scores [C] of a clip (each bin's evaluation frame, the path evaluation takes).
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from xmic.config import ConfigError, XmicError, from_dict
from xmic.train.build import build_model, load_tower
from xmic.train.run_folder import CHECKPOINT
from xmic.train.checkpoint import (CheckpointError, check_checkpoint, check_state_shapes,
                                   load_checkpoint, load_model_state)
from xmic.train.config import TextTowerConfig, TrainConfig, migrate_config
from xmic.cache import CacheError
from xmic.cache.sampling import bin_layout
from xmic.train.data import FeatureBank, batch, model_inputs


class ScoreError(XmicError):
    """A clip that a run cannot score (views, frames)."""


def run_tower(cfg: TrainConfig, ck: dict, device):
    """A loaded run's frozen text tower (None for a method without one): the process's, kept by
    identity, so evaluation and predict tokenize with the tower the model holds."""
    return load_tower(cfg, ck["fingerprints"]["vocab"], ck.get("text_tower"), device)


@torch.no_grad()
def predict_logits(model, bank: FeatureBank, w: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Logits [S, C] at bin centres, in batches."""
    model.eval()
    cls, cond = cfg.feeds()
    out = []
    seg = torch.arange(len(bank), device=bank.labels.device)
    for s in seg.split(cfg.eval_batch_size):
        f, x, _ = batch(bank, s, cls, cond, cfg.frames, None, train=False)
        amp = cfg.autocast_dtype(w.device)
        with torch.autocast(w.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out.append(model(f, x, w).float())
    return torch.cat(out)


def evaluate_bank(model, bank: FeatureBank, w: torch.Tensor, cfg: TrainConfig) -> dict:
    logits = predict_logits(model, bank, w, cfg)
    return {"top1": 100.0 * (logits.argmax(1) == bank.labels).float().mean().item(),
            "loss": F.cross_entropy(logits, bank.labels).item(), "n": len(bank)}


def load_run(run: str | Path, device="cpu", text_tower: TextTowerConfig | None = None
             ) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """The selected model of a run on ``device``; a prompt method's frozen text tower is the one
    the run recorded, or ``text_tower`` (its weights found elsewhere), checked against the
    vocabulary either way."""
    path = Path(run) / CHECKPOINT
    ck = check_checkpoint(load_checkpoint(path), path)
    try:
        cfg = from_dict(TrainConfig, migrate_config(ck["config"]), f"{path}:config")
        dims = (int(ck["dims"]["text"]), ck["dims"]["cond"], ck["fingerprints"]["vocab"])
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path}: not an xmic checkpoint ({e})") from None
    if text_tower is not None and cfg.record.tower:
        cfg = replace(cfg, model=replace(cfg.model, text_tower=text_tower))
    tower = run_tower(cfg, ck, device)

    def build():
        return build_model(cfg, dims[0], dims[1], len(ck["classes"]), tower, init_context=False)
    try:
        with torch.device("meta"):  # shapes only: a checkpoint's widths allocate nothing yet
            check_state_shapes(build().state_dict(), ck["model"], path)
        model = build()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its widths {ck['dims']} cannot build the model ({e})") from None
    load_model_state(model, ck["model"], path)
    return model.to(device).eval(), cfg, ck


@torch.no_grad()
def score_clip(model, cfg: TrainConfig, views: dict[str, np.ndarray], w: np.ndarray,
               frames: list[int], span: tuple[int, int]) -> np.ndarray:
    """views: name -> [n, D] embeddings of the clip's ``frames`` (sorted frame numbers inside
    ``span`` = [start, stop)); w: [C, D] embeddings (or a prompt method's token ids [C, L], a
    tensor). Returns scores [C] at each bin's evaluation frame, as evaluation takes them."""
    missing = [v for v in cfg.views() if v not in views]
    if missing:
        raise ScoreError(f"the run reads views {cfg.views()}; missing {missing}")
    try:
        lay = bin_layout("segment", np.array([span[0]]), np.array([span[1]]),
                         np.asarray(frames, np.int64), np.array([0, len(frames)]), cfg.frames,
                         "the clip", ["clip"])
    except CacheError as e:
        raise ScoreError(str(e)) from None
    pos = torch.from_numpy(lay.eval[0])

    def pick(a: np.ndarray) -> torch.Tensor:  # [1, T, D] at the evaluation frames
        return torch.from_numpy(np.asarray(a, dtype=np.float32))[pos][None]
    w = w if isinstance(w, torch.Tensor) else torch.from_numpy(np.asarray(w, dtype=np.float32))
    f, x = model_inputs(cfg, lambda v: pick(views[v]).to(w.device))
    return model(f, x, w)[0].float().cpu().numpy()

"""Checkpoints: written atomically with ``torch.save``, read back with ``weights_only=True``.

Input/output: a plain dict of tensors, numbers, strings, lists and dicts (model, optimizer,
scheduler and scaler states, RNG state, epoch, history, the resolved config, cache fingerprints).
``check_resumable`` refuses a checkpoint made with another config (only ``epochs`` may grow).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from xmic.config import XmicError


class CheckpointError(XmicError):
    pass


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: refused or unreadable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None


def check_resumable(ckpt: dict, config: dict, fingerprints: dict, path: Path) -> None:
    old = {k: v for k, v in ckpt["config"].items() if k != "epochs"}
    new = {k: v for k, v in config.items() if k != "epochs"}
    if old != new:
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        raise CheckpointError(f"{path} was made with another config ({'; '.join(diff)}); resume "
                              "with the same config (only epochs may change), or use a new --out")
    if ckpt.get("fingerprints") != fingerprints:
        raise CheckpointError(f"{path} was trained on features with other fingerprints than this "
                              "cache's; resume on the same cache, or use a new --out")

"""Checkpoints: written atomically with ``torch.save``, read back with ``weights_only=True``.

Input/output: a plain dict of tensors, numbers, strings, lists and dicts (model, optimizer,
scheduler and scaler states, RNG state, epoch, history, the resolved config, cache fingerprints).
``check_resumable`` refuses a checkpoint made with another config (only ``epochs`` may grow).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from xmic.cache.atomic_files import write_bytes_atomic
from xmic.config import XmicError


class CheckpointError(XmicError):
    pass


def save_checkpoint(path: Path, state: dict) -> None:
    """Serialised in memory, then written atomically (no link in the run folder is followed)."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer(), path.parent)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).splitlines() or ["empty or truncated file"])[0][:200]
        raise CheckpointError(f"{path}: refused or unreadable checkpoint ({type(e).__name__}: "
                              f"{first})") from None


def check_resumable(ckpt: dict, config: dict, fingerprints: dict, path: Path) -> None:
    from xmic.config import config_to_dict, from_dict
    from xmic.train.config import TrainConfig
    try:  # a run from before a config field existed has that field's default
        saved = config_to_dict(from_dict(TrainConfig, ckpt["config"], f"{path}:config"))
    except XmicError:
        saved = ckpt["config"]
    old = {k: v for k, v in saved.items() if k != "epochs"}
    new = {k: v for k, v in config.items() if k != "epochs"}
    if old != new:
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        raise CheckpointError(f"{path} was made with another config ({'; '.join(diff)}); resume "
                              "with the same config (only epochs may change), or use a new --out")
    if ckpt.get("fingerprints") != fingerprints:
        raise CheckpointError(f"{path} was trained on features with other fingerprints than this "
                              "cache's; resume on the same cache, or use a new --out")

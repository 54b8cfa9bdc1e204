"""Checkpoints: written atomically with ``torch.save``, read back with ``weights_only=True``.

Input/output: a plain dict of tensors, numbers, strings, lists and dicts (model, optimizer,
scheduler and scaler states, RNG state, epoch, history, the resolved config, cache fingerprints).
``check_resumable`` refuses a checkpoint made with another config (only ``epochs`` may grow).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from xmic.files.atomic import write_bytes_atomic
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


REQUIRED = {"config": dict, "model": dict, "fingerprints": dict, "dims": dict, "classes": list,
            "epoch": int}


def check_checkpoint(ck, path: Path) -> dict:
    """A loaded checkpoint has the fields a run writes, of their types, and finite tensors."""
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: not an xmic checkpoint (a {type(ck).__name__}, not a dict)")
    for key, tp in REQUIRED.items():
        if not isinstance(ck.get(key), tp):
            raise CheckpointError(f"{path}: not an xmic checkpoint ({key!r} is "
                                  f"{'missing' if key not in ck else type(ck[key]).__name__}, "
                                  f"{tp.__name__} expected)")
    bad = [k for k, v in ck["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: model entries {bad[:3]} are not tensors")
    from xmic.train.methods import METHODS
    from xmic.train.prompt_model import PROMPT_FORMAT
    method = ck["config"].get("method")
    record = METHODS.get(method) if isinstance(method, str) else None
    if record is not None and record.tower and ck.get("prompt_format") != PROMPT_FORMAT:
        raise CheckpointError(f"{path}: a {method} run made with the prompt 'X ... X {{name}}.' "
                              "(a trailing '.'); the released X-MIC trainers build 'X ... X "
                              "{name}', so its prompt token ids differ: train it again")
    nonfinite = [k for k, v in ck["model"].items()
                 if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise CheckpointError(f"{path}: the weights {nonfinite[:3]} hold NaN or infinite values; "
                              "this run diverged, retrain it (lower optim.lr)")
    return ck


def check_state_shapes(want: dict, state: dict, path: Path) -> None:
    """The checkpoint's tensors have exactly the names and shapes of the model its config
    describes (``want``: that model's state dict, built on the meta device): checked before
    the model is built for real, so a checkpoint's recorded widths allocate nothing they do not
    hold."""
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    shapes = sorted(k for k in set(want) & set(state) if tuple(want[k].shape) != tuple(state[k].shape))
    if missing or extra or shapes:
        detail = "; ".join(f"{what}: {', '.join(ks[:3])}{' ...' if len(ks) > 3 else ''}"
                           for what, ks in (("missing", missing), ("unexpected", extra),
                                            ("mis-shaped", shapes)) if ks)
        raise CheckpointError(f"{path}: its weights do not fit the model its config and widths "
                              f"describe ({detail})")


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Strict ``load_state_dict``; a missing, extra or mis-shaped tensor is one line."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [x.strip() for x in str(e).splitlines()[1:] if x.strip()]
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes "
                              f"({'; '.join(lines)[:300]})") from None


def check_resumable(ckpt: dict, config: dict, fingerprints: dict, path: Path) -> None:
    from xmic.train.config import todays_record
    try:  # a run from before a config field existed has that field's default
        saved = todays_record(ckpt["config"], f"{path}:config")
    except XmicError:
        saved = ckpt["config"]
    free = ("epochs", "log", "compile")  # more epochs, tracking, compiling: the same run
    # where the text tower's weights are found is not the run (its identity is checked)
    old, new = ({k: ({**v, "text_tower": None} if k == "model" else v)
                 for k, v in c.items() if k not in free} for c in (saved, config))
    if old != new:
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        raise CheckpointError(f"{path} was made with another config ({'; '.join(diff)}); resume "
                              "with the same config (only epochs, log and compile may change), or use a "
                              "new --out")
    if ckpt.get("fingerprints") != fingerprints:
        raise CheckpointError(f"{path} was trained on features with other fingerprints than this "
                              "cache's; resume on the same cache, or use a new --out")

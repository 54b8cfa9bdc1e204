"""Weights files made for the user: an OpenAI TorchScript archive converted to a state dict, and
named weights copied out of the Hugging Face cache.

Inputs: an archive path (``convert_openai_weights``) or a model name and a pretrained tag or
``hf-hub:ORG/REPO`` (``fetch_weights``), and the new file to write. Outputs: a safetensors state
dict of the model (nothing of the archive runs: ``xmic.towers.script_archive``; names, shapes,
dtypes and values checked before a tensor is copied), or a copy of the cached file after it
loaded into the model as ``--weights FILE`` would. Files are created new (O_EXCL, no link
followed).
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path

import torch

from xmic.files.atomic import sha256_file
from xmic.towers import named_weights
from xmic.towers.encoders import (OPENAI_ORIGIN_KEY, EncoderError, expected_state_shapes,
                                  load_clip)


def convert_openai_weights(src: str | Path, dst: str | Path,
                           model: str = "ViT-B-16-quickgelu") -> dict:
    """OpenAI TorchScript archive (e.g. ``ViT-B-16.pt``) -> safetensors state dict for open_clip.

    The archive's tensors are read without running any of its code (``script_archive``), and
    must be exactly the state dict of ``model``: every name, every shape; else it is refused."""
    from safetensors.torch import save_file
    from xmic.towers.script_archive import ArchiveError, read_archive_tensors
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise EncoderError(f"{src}: archive not found")
    want = expected_state_shapes(model)
    need = 4 * sum(math.prod(shape) for shape in want.values())  # fp32 at most
    try:
        tensors = read_archive_tensors(src, max_bytes=need + (16 << 20))  # + scalars and masks
    except ArchiveError as e:
        raise EncoderError(str(e)) from None
    sd = {k: v for k, v in tensors.items()  # views of the storages: nothing copied yet
          if k not in ("input_resolution", "context_length", "vocab_size")
          and not k.endswith("attn_mask")}  # scalars and masks are rebuilt by open_clip
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    shapes = sorted(k for k in set(want) & set(sd) if tuple(sd[k].shape) != want[k])
    if missing or extra or shapes:
        detail = "; ".join(f"{what} {len(ks)} ({', '.join(ks[:3])}{', ...' if len(ks) > 3 else ''})"
                           for what, ks in (("missing", missing), ("unexpected", extra),
                                            ("mis-shaped", shapes)) if ks)
        raise EncoderError(f"{src}: holds {len(sd)} tensors that are not the state dict of "
                           f"{model} ({len(want)} tensors): {detail}; give the OpenAI archive of "
                           "this model, or --model for the archive's architecture")
    not_float = sorted(k for k, v in sd.items() if not v.is_floating_point())
    if not_float:
        raise EncoderError(f"{src}: tensor(s) {not_float[:3]} hold {sd[not_float[0]].dtype} "
                           "values; weights are floating point")
    bad = [k for k, v in sd.items() if not torch.isfinite(v).all()]
    if bad:
        raise EncoderError(f"{src}: tensor(s) with NaN or infinite values: {bad[:3]}")
    sd = {k: v.detach().contiguous().clone() for k, v in sd.items()}  # checked: now copied
    save_file(sd, str(dst), metadata={OPENAI_ORIGIN_KEY: "openai", "source": src.name,
                                      "source_sha256": sha256_file(src)})
    return {"tensors": len(sd), "parameters": sum(v.numel() for v in sd.values())}


def fetch_weights(model: str, weights: str, out: Path) -> Path:
    """Resolve named weights, check them as ``--weights FILE`` is checked (loaded into
    ``model``), and copy the file to ``out`` (a new file; never a link)."""
    src = named_weights.resolve(model, weights)
    try:  # the checks `--weights FILE` gets, on what the Hugging Face cache holds
        load_clip(model, str(src), "cpu")
    except EncoderError as e:
        raise EncoderError(f"the file the Hugging Face cache holds for {model} {weights} is "
                           f"refused ({e}); nothing was copied") from None
    out = Path(out)
    if out.suffix != src.suffix:
        raise EncoderError(f"{out}: the weights are a {src.suffix} file; name it "
                           f"{out.with_suffix(src.suffix).name}")
    if out.is_symlink() or out.exists():
        raise EncoderError(f"{out} exists; give a new file name")
    tmp = out.with_name(f".{out.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb") as g:
            shutil.copyfileobj(f, g, 1 << 22)
            g.flush()
            os.fsync(g.fileno())
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out

"""Score one clip with a trained run: frames per view -> class scores for any vocabulary.

Inputs: a run folder (``checkpoint.pt``), per view the clip's frame embeddings [n, D] (the
frames the extractor sampled), and class text embeddings [C, D]. Output: scores [C] at the 16
bin centres (SPEC §2), the same path evaluation takes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xmic.config import XmicError, from_dict
from xmic.train.build import build_model
from xmic.train.checkpoint import load_checkpoint
from xmic.train.config import TrainConfig
from xmic.train.data import positions


def load_run(run: str | Path) -> tuple[torch.nn.Module, TrainConfig, dict]:
    ck = load_checkpoint(Path(run) / "checkpoint.pt")
    cfg = from_dict(TrainConfig, ck["config"], f"{run}/checkpoint.pt:config")
    model = build_model(cfg, ck["dims"]["text"], ck["dims"]["cond"], len(ck["classes"]))
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck


@torch.no_grad()
def score_clip(model, cfg: TrainConfig, views: dict[str, np.ndarray], w: np.ndarray) -> np.ndarray:
    """views: name -> [n, D] frame embeddings; w: [C, D]. Returns scores [C]."""
    missing = [v for v in cfg.views() if v not in views]
    if missing:
        raise XmicError(f"the run reads views {cfg.views()}; missing {missing}")

    def pick(a: np.ndarray) -> torch.Tensor:  # [1, T, D] at the bin centres
        pos = positions(torch.tensor([len(a)]), cfg.frames, None)[0]
        return torch.from_numpy(np.asarray(a, dtype=np.float32))[pos][None]
    f = pick(views[cfg.model.classified_view])
    x = (torch.stack([pick(views[v]) for v in cfg.model.conditioning_views], dim=2)
         if cfg.method == "xmic" else None)
    return model(f, x, torch.from_numpy(np.asarray(w, dtype=np.float32)))[0].numpy()

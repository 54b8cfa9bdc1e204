"""A trained run for notebooks: ``run = xmic.load_run(RUN)``.

Input: a run folder (its ``checkpoint.pt``: the selected model and what it was trained on).
Outputs: ``run.predict(cache, split, k)`` -> a pandas DataFrame, one row per segment: its id,
its true class, and the top-k class names with their scores and softmax probabilities (the
checks of ``xmic evaluate``: the cache must hold the run's views with the same features);
``run.score(features, w)`` -> logits [B, C] of feature tensors at the run's T frames per view
(``features``: view -> [B, T, D]; ``w``: class embeddings [C, D], default the vocabulary of
``run.vocab(cache)``); ``run.config``, ``run.method``, ``run.classes``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xmic.cache import Cache
from xmic.config import XmicError, resolve_device
from xmic.evaluate.metrics import ranked
from xmic.evaluate.run import score_split
from xmic.train.build import check_inputs, text_input
from xmic.train.data import model_inputs
from xmic.train.inference import load_run, run_tower


class Run:
    def __init__(self, run_dir, device: str = "cpu"):
        self.path = Path(run_dir)
        self.device = resolve_device(device)
        self.model, self.config, self._ck = load_run(self.path, self.device)
        self.method, self.classes = self.config.method, list(self._ck["classes"])

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}: {self.method}, label {self.config.label}, "
                f"{len(self.classes)} classes, epoch {self._ck.get('epoch')})")

    def predict(self, cache, split: str, k: int = 5):
        """Top-k classes of every segment of a cache split, as a DataFrame."""
        import pandas as pd
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1 (the classes listed per segment), got {k!r}")
        c = cache if isinstance(cache, Cache) else Cache.open(cache)
        scores, labels, bank, vocab = score_split(self.model, self.config, self._ck, self.path,
                                                  c, split, self.device)          # [S, C]
        k = min(k, scores.shape[1])
        top = ranked(scores, k)                                                  # [S, k]
        probs = torch.softmax(torch.from_numpy(scores), 1).numpy()
        names = np.array(vocab.names, dtype=object)
        out = {"segment_id": bank.segment_ids, "label": names[labels].tolist()}
        for i in range(k):
            out[f"class_{i + 1}"] = names[top[:, i]].tolist()
            out[f"score_{i + 1}"] = scores[np.arange(len(top)), top[:, i]]
            out[f"prob_{i + 1}"] = probs[np.arange(len(top)), top[:, i]]
        return pd.DataFrame(out)

    def vocab(self, cache) -> tuple[list[str], torch.Tensor]:
        """(class names, the text input of ``score``) of a cache's vocabulary for this run."""
        c = cache if isinstance(cache, Cache) else Cache.open(cache)
        inputs = check_inputs(c, self.config)
        w = text_input(self.config, inputs.vocab.names, inputs.vocab.embeddings,
                       run_tower(self.config, self._ck, self.device), self.device)
        return list(inputs.vocab.names), w

    @torch.no_grad()
    def score(self, features: dict, w) -> torch.Tensor:
        """Logits [B, C]: ``features`` view -> [B, T, D] (T = the run's frames per segment),
        ``w`` the class input of ``vocab`` (embeddings [C, D])."""
        cfg = self.config
        need = cfg.views()
        missing = [v for v in need if v not in features]
        if missing:
            raise XmicError(f"the run reads views {need}; missing {missing}")
        dev = self.device

        def as_tensor(a) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a,
                                dtype=torch.float32).to(dev)
            if t.ndim != 3 or t.shape[1] != cfg.frames:
                raise XmicError(f"features must be [B, {cfg.frames}, D] per view (the run's "
                                f"frames per segment), got {list(t.shape)}")
            return t
        f, x = model_inputs(cfg, lambda v: as_tensor(features[v]))   # [B, T, D], [B, T, V, D']
        w = w.to(dev) if isinstance(w, torch.Tensor) else torch.as_tensor(w, dtype=torch.float32).to(dev)
        self.model.eval()
        return self.model(f, x, w).float().cpu()

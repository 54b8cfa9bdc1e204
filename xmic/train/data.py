"""Cached features in memory and the vectorised frame sampling of SPEC §2.

Inputs: a ``Cache``, a split, the views a method reads, the label (noun | verb) and the class
count. Output: ``FeatureBank``: per view the frames [N_v, D_v] as one tensor on the device with
per-segment ``starts`` / ``counts`` [S], plus labels [S] and segment/video ids. ``batch`` draws
T positions per segment (a random frame in each of T equal bins for training, bin centres for
evaluation) and gathers [B, T, D] with one index operation per view, no per-segment loop.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from xmic.cache import Cache, CacheError, load_split
from xmic.cache.writer import nonfinite_rows


@dataclass
class FeatureBank:
    features: dict[str, torch.Tensor]  # view -> [N_v, D_v]
    starts: dict[str, torch.Tensor]    # view -> [S] first row of each segment
    counts: dict[str, torch.Tensor]    # view -> [S] frames of each segment
    labels: torch.Tensor               # [S] class ids
    segment_ids: list[str]
    video_ids: list[str]
    skipped: dict

    def __len__(self) -> int:
        return len(self.segment_ids)

    def subset(self, index: np.ndarray) -> "FeatureBank":
        """The segments at ``index`` (features shared, not copied)."""
        t = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return replace(self, starts={v: s[t] for v, s in self.starts.items()},
                       counts={v: c[t] for v, c in self.counts.items()}, labels=self.labels[t],
                       segment_ids=[self.segment_ids[i] for i in index],
                       video_ids=[self.video_ids[i] for i in index])


def load_bank(cache: Cache, split: str, views: list[str], label: str, classes: int,
              device: torch.device | str = "cpu") -> FeatureBank:
    """Load ``views`` of ``split`` to ``device``; refuse empty splits, bad labels and NaN."""
    data = load_split(cache, views, split)
    if not data.segment_ids:
        raise CacheError(f"{cache.root}: split {split!r} has no usable segment in views {views} "
                         f"(skipped: {data.skipped})")
    labels = np.asarray(data.segments[f"{label}_id"].to_numpy(zero_copy_only=False), dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        ids = [data.segment_ids[i] for i in bad[:5]]
        raise CacheError(f"{cache.root}: split {split}: {len(bad)} segment(s) have {label} ids "
                         f"outside the vocabulary's {classes} classes (e.g. {ids}, ids "
                         f"{labels[bad[:5]].tolist()}); use the vocabulary of these annotations")
    feats, starts, counts = {}, {}, {}
    for v, va in data.views.items():
        rows = nonfinite_rows(va.features)
        if rows.any():
            seg = np.searchsorted(va.offsets, np.flatnonzero(rows), side="right") - 1
            ids = sorted({data.segment_ids[i] for i in seg})
            raise CacheError(f"{cache.root}: view {v} of split {split} holds NaN or Inf in "
                             f"{len(ids)} segment(s): {ids[:5]}; re-extract them")
        feats[v] = torch.from_numpy(va.features).to(device)
        off = torch.from_numpy(va.offsets).to(device)
        starts[v], counts[v] = off[:-1], off[1:] - off[:-1]
    return FeatureBank(feats, starts, counts, torch.from_numpy(labels).to(device),
                       data.segment_ids, data.segments["video_id"].to_pylist(), data.skipped)


def heldout_split(video_ids: list[str], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train index, held-out index) with whole videos held out; independent of the seed."""
    videos = sorted(set(video_ids), key=lambda v: (zlib.crc32(v.encode()), v))
    k = int(round(len(videos) * fraction))
    if fraction > 0 and len(videos) > 1:
        k = min(max(k, 1), len(videos) - 1)
    else:
        k = 0
    held = set(videos[:k])
    mask = np.array([v in held for v in video_ids], dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def positions(counts: torch.Tensor, frames: int, u: torch.Tensor | None) -> torch.Tensor:
    """Frame positions [B, T] inside segments of ``counts`` [B] frames (SPEC §2).
    step = (n − 1)/T; bin i starts at i·step. Training (``u`` [B, T] uniform in [0, 1)):
    ⌊i·step⌋ + ⌊u·max(1, ⌊step⌋)⌋; evaluation (``u`` None): ⌊i·step + step/2⌋. Clipped to n − 1."""
    n = counts.to(torch.float64)[:, None]                                # [B, 1]
    step = (n - 1) / frames
    i = torch.arange(frames, device=counts.device, dtype=torch.float64)[None]  # [1, T]
    if u is None:
        pos = torch.floor(i * step + step / 2)
    else:
        width = torch.clamp(torch.floor(step), min=1.0)
        pos = torch.floor(i * step) + torch.floor(u.to(torch.float64) * width)
    return torch.minimum(pos, n - 1).clamp(min=0).to(torch.long)


def gather(bank: FeatureBank, view: str, seg: torch.Tensor, u: torch.Tensor | None,
           frames: int) -> torch.Tensor:
    """[B, T, D] frames of view for segments ``seg`` [B]."""
    pos = positions(bank.counts[view][seg], frames, u)
    return bank.features[view][bank.starts[view][seg][:, None] + pos]


def batch(bank: FeatureBank, seg: torch.Tensor, classified: str, conditioning: list[str] | None,
          frames: int, generator: torch.Generator | None, train: bool):
    """(f [B, T, D], x [B, T, V, D'] or None, labels [B]). Every view shares the same draws."""
    u = (torch.rand((len(seg), frames), generator=generator, device=seg.device)
         if train else None)
    f = gather(bank, classified, seg, u, frames)
    x = (torch.stack([gather(bank, v, seg, u, frames) for v in conditioning], dim=2)
         if conditioning else None)
    return f, x, bank.labels[seg]

"""Cached features in memory and the vectorised frame sampling of the released loaders.

Inputs: a ``Cache``, a split, the views a method reads, the label (noun | verb), the class
count and T. Output: ``FeatureBank``: per view the frames [N_v, D_v] as one tensor on the device
with per-segment ``starts`` / ``counts`` [S], each bin's rows (``layout``: training candidates
and the evaluation frame, ``xmic.cache.sampling``), plus labels [S] and segment/video ids.
``batch`` draws T rows per segment (a stored candidate of each bin for training, each bin's
evaluation frame otherwise) and gathers [B, T, D] with one index operation per view.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

import pyarrow.compute as pc

from xmic.cache import Cache, CacheError, load_split
from xmic.cache.sampling import (SAMPLING_VERSION, BinLayout, bin_layout, rows_layout,
                                 rule_of)
from xmic.cache.writer import nonfinite_rows


@dataclass
class FeatureBank:
    features: dict[str, torch.Tensor]  # view -> [N_v, D_v]
    starts: dict[str, torch.Tensor]    # view -> [S] first row of each segment
    counts: dict[str, torch.Tensor]    # view -> [S] frames of each segment
    # view -> (begin [S, T], count [S, T], eval [S, T]): rows inside each segment holding each
    # bin's training candidates and its evaluation frame (``cache.sampling.bin_layout``)
    layout: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    labels: torch.Tensor               # [S] class ids
    segment_ids: list[str]
    recordings: list[str]              # [S] the recording each segment was cut from
    skipped: dict

    def __len__(self) -> int:
        return len(self.segment_ids)

    def subset(self, index: np.ndarray) -> "FeatureBank":
        """The segments at ``index`` (features shared, not copied)."""
        t = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return replace(self, starts={v: s[t] for v, s in self.starts.items()},
                       counts={v: c[t] for v, c in self.counts.items()},
                       layout={v: tuple(x[t] for x in lay) for v, lay in self.layout.items()},
                       labels=self.labels[t],
                       segment_ids=[self.segment_ids[i] for i in index],
                       recordings=[self.recordings[i] for i in index])


def restrict(bank: FeatureBank, ids: np.ndarray) -> FeatureBank:
    """The segments whose class is one of ``ids`` (vocabulary rows), labels renumbered to
    positions in ``ids`` (the classifier of those classes only)."""
    labels = bank.labels.cpu().numpy()
    lookup = np.full(max(int(labels.max(initial=0)), int(ids.max(initial=0))) + 1, -1, np.int64)
    lookup[ids] = np.arange(len(ids))
    keep = np.flatnonzero(lookup[labels] >= 0)
    out = bank.subset(keep)
    out.labels = torch.from_numpy(lookup[labels[keep]]).to(bank.labels.device)
    return out


def load_bank(cache: Cache, split: str, views: list[str], label: str, classes: int,
              device: torch.device | str = "cpu", frames: int = 16, offset: int = 0) -> FeatureBank:
    """Load ``views`` of ``split`` to ``device`` with the layout of ``frames`` bins per segment;
    labels index a vocabulary of ``classes`` whose first ``offset`` classes are never labels (the
    released EGTEA vocabulary's empty class). Refuse empty splits, bad labels, NaN, and caches
    that lack the released loader's frames."""
    data = load_split(cache, views, split)
    if not data.segment_ids:
        raise CacheError(f"{cache.root}: split {split!r} has no usable segment in views {views} "
                         f"(skipped: {data.skipped})")
    labels = np.asarray(data.segments[f"{label}_id"].to_numpy(zero_copy_only=False),
                        dtype=np.int64) + offset
    bad = np.flatnonzero((labels < offset) | (labels >= classes))
    if len(bad):
        ids = [data.segment_ids[i] for i in bad[:5]]
        raise CacheError(f"{cache.root}: split {split}: {len(bad)} segment(s) have {label} ids "
                         f"outside the vocabulary's {classes} classes (e.g. {ids}, ids "
                         f"{labels[bad[:5]].tolist()}); use the vocabulary of these annotations")
    feats, starts, counts, layout = {}, {}, {}, {}
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
        lay = view_layout(cache, v, data, va.offsets, frames)
        layout[v] = tuple(torch.from_numpy(np.ascontiguousarray(x)).to(device)
                          for x in (lay.begin, lay.count, lay.eval))
    return FeatureBank(feats, starts, counts, layout, torch.from_numpy(labels).to(device),
                       data.segment_ids, data.segments["recording_id"].to_pylist(), data.skipped)


def sampling_notes(cache: Cache, views: list[str]) -> list[str]:
    """What differs from the released loaders in views of an earlier sampling version."""
    out = []
    for v in views:
        sampling = cache.view(v)["fingerprint"].get("sampling") or {}
        if sampling.get("version") != SAMPLING_VERSION and sampling.get("source") != "xmic-pickle":
            out.append(f"view {v} of {cache.root} was extracted with sampling version 1: its "
                       "segments include their stop frame, Ego4D's window is 4 s of the "
                       "annotation fps, and frames are drawn over the stored rows with step "
                       "(n - 1)/T for every dataset, so its frames are not the released loaders'; "
                       "re-extract it to reproduce the released numbers")
    return out


def view_layout(cache: Cache, view: str, data, offsets: np.ndarray, frames: int) -> BinLayout:
    """Where each bin's frames lie among a view's stored rows, by the rule its fingerprint
    records: extraction (sampling version 2) stores frame numbers of the released ranges;
    imported X-MIC features hold every frame of the segment, rows numbered from 0 (the
    dataset's rule over them, as the released loaders index their feature arrays); caches of
    sampling version 1 are read as before (rows as frames, step (n - 1)/T)."""
    sampling = cache.view(view)["fingerprint"].get("sampling") or {}
    counts = np.diff(offsets)
    if sampling.get("version") == SAMPLING_VERSION:
        fi = data.segments["frame_indices"]
        lengths = pc.list_value_length(fi).to_numpy(zero_copy_only=False)
        if not np.array_equal(lengths, counts):
            raise CacheError(f"{cache.root}: view {view} stores other frames than the index "
                             "records for its segments; it was extracted with other sampling "
                             "settings than the cache's other views: extract it with the same")
        flat = pc.list_flatten(fi).to_numpy(zero_copy_only=False).astype(np.int64)
        seg = data.segments
        return bin_layout(sampling["rule"], seg["start_frame"].to_numpy(zero_copy_only=False),
                          seg["stop_frame"].to_numpy(zero_copy_only=False), flat, offsets,
                          frames, f"{cache.root}: view {view}", data.segment_ids)
    rule = rule_of(cache.dataset) if sampling.get("source") == "xmic-pickle" else "segment"
    return rows_layout(rule, counts, frames)


def heldout_split(recordings: list[str], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train index, held-out index) with whole recordings held out (``fraction`` of them, at
    least one and never all); independent of the seed."""
    videos = sorted(set(recordings), key=lambda v: (zlib.crc32(v.encode()), v))
    k = int(round(len(videos) * fraction))
    if fraction > 0 and len(videos) > 1:
        k = min(max(k, 1), len(videos) - 1)
    else:
        k = 0
    held = set(videos[:k])
    mask = np.array([v in held for v in recordings], dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def rows(layout, seg: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """Rows [B, T] inside segments ``seg`` [B]: each bin's evaluation frame (``u`` None), or a
    training candidate drawn uniformly among the bin's stored ones (``u`` [B, T] in [0, 1))."""
    begin, count, ev = layout
    if u is None:
        return ev[seg]
    pick = torch.floor(u.to(torch.float64) * count[seg]).to(torch.long)
    return begin[seg] + torch.minimum(pick, count[seg] - 1)


def gather(bank: FeatureBank, view: str, seg: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """[B, T, D] frames of view for segments ``seg`` [B]."""
    return bank.features[view][bank.starts[view][seg][:, None] + rows(bank.layout[view], seg, u)]


def model_inputs(cfg, get) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(f [B, T, D], x [B, T, V, D'] or None) from ``get(view)`` -> [B, T, D] of one view, by
    the config's one rule of what the model reads (``TrainConfig.feeds``)."""
    cls, cond = cfg.feeds()
    return get(cls), (torch.stack([get(v) for v in cond], dim=2) if cond else None)


def batch(bank: FeatureBank, seg: torch.Tensor, classified: str, conditioning: list[str] | None,
          frames: int, generator: torch.Generator | None, train: bool):
    """(f [B, T, D], x [B, T, V, D'] or None, labels [B]). Every view shares the same draws."""
    u = (torch.rand((len(seg), frames), generator=generator, device=seg.device)
         if train else None)
    f = gather(bank, classified, seg, u)
    x = (torch.stack([gather(bank, v, seg, u) for v in conditioning], dim=2)
         if conditioning else None)
    return f, x, bank.labels[seg]

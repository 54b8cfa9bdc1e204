"""``evaluate_run``: score a trained run on any cache's split, in-dataset or cross-dataset.

Inputs: a run folder (its ``checkpoint.pt``), a cache and split, optionally X-MIC's class-split
lists. The classifier is rebuilt from the target cache's own vocabulary for the run's label
(for CoOp/CoCoOp: the learned context before the target's class names, through the run's frozen
text tower, which is why evaluation imports the extraction stage's tower loader).
Outputs (in ``out``, default ``RUN/eval/{dataset}-{split}``): ``metrics.json`` (see
``metrics.compute_metrics`` plus what was evaluated), ``predictions.parquet`` (segment id, true
class, top-5 classes and scores, per class-split criterion ``shared_CRIT``: whether the true
class is shared with the source; what the bootstrap of ``grid table --ci`` resamples) and the
plots. A run and a cache whose classified-stream
fingerprints differ are refused, with both fingerprints shown.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from xmic.cache import Cache
from xmic.cache.fingerprint import PER_DATASET_CROP, diff, fingerprint_id
from xmic.files.atomic import make_dirs, write_bytes_atomic, write_text_atomic
from xmic.config import XmicError, resolve_device
from xmic.evaluate.classes import derive_shared, find_class_splits
from xmic.evaluate.metrics import compute_metrics, ranked
from xmic.evaluate.plots import plot_all
from xmic.evaluate.results import (RESULTS_FILE, metric_rows, overrides_hash, results_frame,
                                   write_results)
from xmic.train.build import check_inputs, model_dims, text_input
from xmic.train.run_folder import EVAL_METRICS, PREDICTIONS, RunFolderError, evaluation_dir
from xmic.train.data import load_bank, sampling_notes
from xmic.train.inference import load_run, predict_logits, run_tower

FEATURE_KEYS = ("model", "precision", "preprocess", "crop")  # sampling may differ per dataset
# the box source and its thresholds are the dataset's (EPIC-100's detections at 0.8, the 100DOH
# detector's on Ego4D at 0.5, as released): the crop's rule and version must match, not those


def feature_identity(fp: dict) -> dict:
    """What must be equal for a run to score another cache's view: the feature space."""
    out = {k: fp.get(k) for k in FEATURE_KEYS}
    if out["crop"]:
        out["crop"] = {k: v for k, v in out["crop"].items() if k not in PER_DATASET_CROP}
    return out


class RunMismatch(XmicError):
    """A run cannot score this cache: other features, widths, or (a linear probe) classes."""


def check_fingerprints(run_fps: dict, cache_fps: dict, views: list[str], run: Path,
                       cache: Path) -> None:
    for v in views:
        a, b = feature_identity(run_fps["views"][v]), feature_identity(cache_fps["views"][v])
        if a != b:
            raise RunMismatch(
                f"run {run} was trained on view {v!r} with fingerprint {fingerprint_id(a)}, cache "
                f"{cache} holds fingerprint {fingerprint_id(b)}: {'; '.join(diff(a, b))}. "
                f"Run: {json.dumps(a, sort_keys=True)}; cache: {json.dumps(b, sort_keys=True)}")


def write_evaluation(out: Path, root: Path, metrics: dict, scores: np.ndarray, labels: np.ndarray,
                     segment_ids: list[str], vocab, shared: dict, plot_title: str | None) -> None:
    """metrics.json, predictions.parquet (classes as prompted, raw keys beside) and, with a
    title, the plots, into ``out`` (below ``root``, whose links are refused)."""
    if root == out:  # a folder the user names (it may be a link)
        out.mkdir(parents=True, exist_ok=True)
    else:
        make_dirs(out, root)
    write_text_atomic(out / EVAL_METRICS, json.dumps(metrics, indent=1) + "\n", root)
    top = ranked(scores, min(5, scores.shape[1]))                                 # [S, k]
    probs = torch.softmax(torch.from_numpy(scores), 1).numpy()
    names = np.array(vocab.names, dtype=object)  # as prompted, not the raw keys
    keys = np.array(vocab.classes, dtype=object)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({
        "segment_id": segment_ids, "true_id": labels, "true_class": names[labels].tolist(),
        "true_key": keys[labels].tolist(),
        "top5_ids": top.tolist(), "top5_classes": names[top].tolist(),
        "top5_scores": np.take_along_axis(scores, top, 1).tolist(),
        "top5_probs": np.take_along_axis(probs, top, 1).tolist(),
        # per class-split criterion: whether the segment's class is one the source shares
        **{f"shared_{crit}": np.asarray(mask, dtype=bool)[labels] for crit, mask in
           shared.items()}}), sink)
    write_bytes_atomic(out / PREDICTIONS, memoryview(sink.getvalue()), root)
    if plot_title is not None:
        crit = "exact" if "exact" in shared else next(iter(shared))
        for name, png in plot_all(scores, probs, labels, vocab.names, np.asarray(shared[crit]),
                                  crit, plot_title).items():
            write_bytes_atomic(out / name, png, root)


def score_split(model, cfg, ck: dict, run: Path, cache, split: str, dev,
                bank_loader=load_bank) -> tuple:
    """(scores [S, C] at the bin centres, labels [S], the bank, the vocabulary) of a loaded run
    on a cache split, after checking that the cache holds what the run was trained on (views,
    fingerprints, widths) and a vocabulary it can score (a closed-vocabulary run: its own)."""
    if split not in cache.splits():
        raise RunMismatch(f"{cache.root}: no split {split!r} to score (splits: {cache.splits()})")
    inputs = check_inputs(cache, cfg)
    check_fingerprints(ck["fingerprints"], inputs.fingerprints, cfg.views(), run, cache.root)
    target_classes, source_classes = inputs.vocab.classes, ck["classes"]
    if not cfg.record.open_vocabulary and target_classes != source_classes:
        raise RunMismatch(f"run {run} ({cfg.method}) scores only its {len(source_classes)} "
                         f"training classes; it cannot score vocabulary {cfg.vocab_name()!r} of "
                         f"{cache.root}")
    dims = model_dims(cfg, inputs)
    if dims != ck["dims"]:
        raise RunMismatch(f"run {run} was built for widths {ck['dims']}, cache {cache.root} "
                          f"holds {dims}")
    bank = bank_loader(cache, split, cfg.views(), cfg.label, len(target_classes), dev,
                       cfg.frames, inputs.vocab.label_offset)
    # the target's own class names: embeddings, or (prompt methods) their prompts' token ids
    w = text_input(cfg, inputs.vocab.names, inputs.vocab.embeddings, run_tower(cfg, ck, dev), dev)
    scores = predict_logits(model, bank, w, cfg).cpu().numpy()                # [S, C]
    return scores, bank.labels.cpu().numpy(), bank, inputs.vocab


def class_part(ck: dict, run: Path, scores: np.ndarray, bank, vocab, part: str) -> tuple:
    """Base-to-novel: the segments of the run's ``part`` classes, scored among those classes
    only (a class's logit does not depend on the others: keeping its columns is the classifier
    of that part), labels renumbered; (scores, labels, bank, vocabulary of the part)."""
    from xmic.train.class_split import ClassSplit
    from xmic.train.data import restrict
    split = ClassSplit.from_record(ck.get("class_split"), f"run {run}")
    ids = split.ids(vocab.classes, part)
    keep = np.isin(bank.labels.cpu().numpy(), ids)
    if not keep.any():
        raise RunMismatch(f"no segment of the run's {part} classes in this split; nothing to "
                          "score")
    sub = restrict(bank, ids)
    return (scores[keep][:, ids], sub.labels.cpu().numpy(), sub, split.vocab(vocab, part))


def vocabulary_notes(vocab) -> list[str]:
    """What a table must say about the target vocabulary: a released vocabulary's extra classes."""
    if not vocab.label_offset:
        return []
    return [f"{vocab.name}: {vocab.source.get('vocabulary', 'classes before label 0')} "
            f"({len(vocab.classes)} classes, {vocab.label_offset} never a label)"]


def evaluate_run(run: str | Path, cache_path: str | Path, split: str,
                 class_splits=None, out: str | Path | None = None,
                 device: str = "auto", plots: bool = True, bank_loader=load_bank,
                 text_tower=None, classes: str = "all") -> dict:
    """Score a run on a cache split; writes metrics.json, predictions.parquet and plots into
    ``out`` (default RUN/eval/DATASET-SPLIT). ``class_splits``: a folder of X-MIC's list
    files, or several (the first holding the pair's lists is read); none: the exact-name rule.
    ``bank_loader``: ``load_bank`` or a memo of it;
    ``text_tower``: a prompt method's text tower found elsewhere (a ``TextTowerConfig``;
    default: the run's recorded one). ``classes``: all, or (a run trained base-to-novel) its
    base or novel classes: those segments only, scored among those classes only (default
    output RUN/eval/DATASET-SPLIT-PART)."""
    run = Path(run)
    dev = resolve_device(device)
    cache = Cache.open(cache_path)  # the output folder first (seconds), then the run and banks
    out = Path(out) if out else evaluation_dir(run, cache.dataset, split, classes)
    if out.is_file():
        raise RunFolderError(f"--out {out} is a file; give a folder for the evaluation")
    if cache.holds(out):
        raise RunFolderError(f"--out {out} lies inside the cache {cache.root}; a cache holds "
                             "only what extraction writes: give a folder outside it")
    if split not in cache.splits():
        raise RunMismatch(f"{cache.root}: no split {split!r} to score (splits: {cache.splits()})")
    model, cfg, ck = load_run(run, dev, text_tower)
    scores, labels, bank, vocab = score_split(model, cfg, ck, run, cache, split, dev, bank_loader)
    if classes != "all":
        scores, labels, bank, vocab = class_part(ck, run, scores, bank, vocab, classes)
    target_classes = vocab.classes
    source_classes, source = ck["classes"], ck.get("source_dataset", "unknown")
    lists = "derived (exact names)"
    if class_splits and cache.dataset != source:
        shared, folder = find_class_splits(class_splits, cache.dataset, source, cfg.label,
                                           target_classes)
        lists = str(folder)
    else:
        shared = derive_shared(source_classes, target_classes)
    metrics = compute_metrics(scores, labels, shared)
    metrics.update(dataset=cache.dataset, split=split, label=cfg.label, method=cfg.method,
                   source_dataset=source, in_dataset=cache.dataset == source, seed=cfg.seed,
                   run=str(run.resolve()), cache=str(cache.root), vocabulary=cfg.vocab_name(),
                   selected_epoch=ck["epoch"], selected_on=ck.get("selected_on"),
                   class_splits=lists, class_part=classes,
                   skipped=bank.skipped,
                   notes=sampling_notes(cache, cfg.views()) + vocabulary_notes(vocab))
    root = run if run in out.parents else out  # inside the run: no link planted on the way
    write_evaluation(out, root, metrics, scores, labels, bank.segment_ids, vocab, shared,
                     f"{cfg.method} ({source} → {cache.dataset} {split}, {cfg.label})" if plots
                     else None)
    rows = metric_rows(metrics, method=cfg.method, trainer=cfg.method,
                       overrides=overrides_hash(ck.get("config", {})), source_split=cfg.split,
                       run=str(run))
    write_results(out / RESULTS_FILE, results_frame(rows), root)
    return metrics

"""The layout of a run folder, written once: every file a training run and its evaluations write.

Input: a run folder (and, for an evaluation, the target's dataset and split names). Output: the
paths below; names read from files (a cache manifest, a grid plan) are checked before they become
a folder::

    RUN/config.yaml              the resolved training config
    RUN/last.pt                  every epoch (resume)
    RUN/checkpoint.pt            the selected epoch
    RUN/metrics.jsonl            one line per epoch (why it was selected or not)
    RUN/train_curve.png          loss and held-out top-1 per epoch
    RUN/train.log                what training printed (every line, appended across resumes)
    RUN/tensorboard/             with log.tensorboard=true
    RUN/wandb/                   with log.wandb=true (offline runs to sync)
    RUN/eval/DATASET-SPLIT/      metrics.json, predictions.parquet and the plots of one evaluation
"""
from __future__ import annotations

from pathlib import Path

from xmic.config import XmicError
from xmic.files.names import BadName, check_name

CONFIG = "config.yaml"
LAST = "last.pt"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CURVE = "train_curve.png"
TENSORBOARD = "tensorboard"
WANDB = "wandb"
LOG = "train.log"
EVAL = "eval"
EVAL_METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
# a folder holding one of these is another tool's, never a run's
FOREIGN = {"cache.json": "a cache", "grid.json": "a grid"}


class RunFolderError(XmicError):
    pass


def evaluation_dir(run_dir: Path, dataset: str, split: str, classes: str = "all") -> Path:
    """``RUN/eval/DATASET-SPLIT`` (base-to-novel: ``-base`` / ``-novel`` after it); both names
    come from files (a cache manifest, a grid plan) and must be plain names, so that nothing is
    written outside the run."""
    if classes not in ("all", "base", "novel"):
        raise RunFolderError(f"classes {classes!r}: all, base or novel")
    try:
        check_name("dataset", dataset)
        check_name("split", split)
    except BadName as e:
        raise RunFolderError(f"evaluation folder of {run_dir}: {e}") from None
    return Path(run_dir) / EVAL / (f"{dataset}-{split}" + ("" if classes == "all"
                                                             else f"-{classes}"))

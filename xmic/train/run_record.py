"""``RunRecord``: one run folder while its run trains (the layout is ``xmic.train.run_folder``).

Inputs: the run folder, the run's ``TrainConfig``, what every checkpoint holds besides the
training state (``context``), and per epoch the metrics row and the stepper's member state.
Outputs in the folder: ``config.yaml`` (written once per start or resume, with what wrote it),
``last.pt`` every epoch and ``checkpoint.pt`` at the selected one (``xmic.train.checkpoint``),
``metrics.jsonl`` (one row per epoch, why it was selected or not), ``train.log`` and the
tracking ``log.*`` asks for (``xmic.train.tracking``), ``train_curve.png``; and the run's
summary. Model selection (``select_epoch``) is the record's: the higher selection top-1, with
the tie rules below. Files are written through ``xmic.files.atomic`` (never through a link
planted in the run folder).
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

from xmic.config import config_to_dict, dump_config
from xmic.files.atomic import write_bytes_atomic, write_text_atomic
from xmic.provenance import provenance
from xmic.train.checkpoint import (CheckpointError, check_checkpoint, check_resumable,
                                   load_checkpoint, save_checkpoint)
from xmic.train.config import TrainConfig
from xmic.train.plots import plot_curve
from xmic.train.run_folder import (CHECKPOINT, CONFIG, CURVE, FOREIGN, LAST, METRICS,
                                   RunFolderError)
from xmic.train.tracking import Tracking


class RunRecord:
    def __init__(self, out: Path, cfg: TrainConfig, resume: bool):
        """Checks the folder before anything is loaded (seconds, not minutes)."""
        self.out, self.cfg = Path(out), cfg
        check_run_folder(self.out, resume)
        self.history: list[dict] = []
        self.best: dict | None = None
        self.tracking: Tracking | None = None
        self.context: dict = {}

    def open(self, context: dict) -> None:
        """The folder and its logs; ``context``: what each checkpoint holds besides training state."""
        self.out.mkdir(parents=True, exist_ok=True)  # the folder the user names may be a link
        self.tracking = Tracking(self.out, self.cfg, self.out.name)
        self.context = context

    def resume(self, fingerprints: dict) -> dict:
        """``last.pt``, checked against this run's config and inputs; its history and best
        become the record's. Returns the checkpoint (the caller restores the training state)."""
        path = self.out / LAST
        ck = check_checkpoint(load_checkpoint(path), path)
        check_resumable(ck, config_to_dict(self.cfg), fingerprints, path)
        self.history, self.best = ck["history"], ck["best"]
        return ck

    def write_config(self) -> None:
        write_text_atomic(self.out / CONFIG, config_header() + dump_config(self.cfg), self.out)

    def steps(self, epoch: int, steps_per_epoch: int, losses: list[float], lrs: list) -> None:
        self.tracking.steps((epoch - 1) * steps_per_epoch + 1, losses, lrs)

    def record(self, row: dict, state: dict, started: float, steps_per_epoch: int, echo) -> None:
        """An epoch: selected or not, its row, ``last.pt`` (and ``checkpoint.pt``), its log
        line. ``state``: the stepper's member state (model, optimizer, scaler, scheduler,
        generator)."""
        epoch = row["epoch"]
        self.best, row["selected"], row["selected_because"] = select_epoch(row, self.best, epoch)
        row["seconds"] = time.time() - started
        self.history.append(row)
        save_epoch(self.out, {
            "model": state["model"], "epoch": epoch, "history": self.history, "best": self.best,
            "optimizer": state["optimizer"], "scaler": state["scaler"],
            "scheduler": state["scheduler"], "generator": state["generator"], **self.context},
            row["selected"])
        self.tracking.epoch(row, max(epoch, 1) * steps_per_epoch)
        echo("epoch {epoch}: ".format(**row) + ", ".join(
            f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))

    def stopped(self, e: BaseException) -> None:
        if self.tracking is not None:
            self.tracking.echo(f"stopped: {type(e).__name__}: {e}")

    def close(self) -> None:
        if self.tracking is not None:
            self.tracking.close(self.best)

    def write_curve(self, dataset: str) -> None:
        png = io.BytesIO()
        plot_curve(self.history, png, f"{self.cfg.method} · {self.cfg.label} · {dataset} "
                   f"{self.cfg.split} · seed {self.cfg.seed}")
        write_bytes_atomic(self.out / CURVE, png.getbuffer(), self.out)

    def summary(self, selected_on: str, data) -> dict:
        return {"out": str(self.out), "best": self.best, "selected_on": selected_on,
                "epochs": len(self.history), "skipped": data.full.skipped,
                "train_segments": len(data.train),
                "heldout_segments": len(data.held) if data.held is not None else 0}


def save_epoch(out: Path, state: dict, selected: bool) -> None:
    """An epoch's files: ``last.pt``, ``checkpoint.pt`` when selected, ``metrics.jsonl``."""
    save_checkpoint(out / LAST, state)
    if selected:
        save_checkpoint(out / CHECKPOINT, state)
    write_text_atomic(out / METRICS, "".join(json_line(r) for r in state["history"]), out)


def select_epoch(row: dict, best: dict | None, epoch: int) -> tuple[dict | None, bool, str]:
    """Model selection: the higher selection top-1 (held-out, or the target's with the released
    behaviour, whose ties keep the earlier epoch: Dassl's ``is_best = curr > best``); a held-out
    tie goes to the lower loss, then to the later epoch. Returns (best, selected, why)."""
    if "target_top1" in row:
        score, loss, on = row["target_top1"], row["target_loss"], "target"
    elif "heldout_top1" in row:
        score, loss, on = row["heldout_top1"], row["heldout_loss"], "held-out"
    else:
        return {"epoch": epoch, "score": epoch, "loss": None}, True, "last epoch (no selection set)"
    if not math.isfinite(score):
        return best, False, f"{on} top-1 is not finite"
    new = {"epoch": epoch, "score": score, "loss": loss}
    if best is None:
        return new, True, f"first epoch scored ({on} top-1 {score:.2f})"
    old_loss = best.get("loss")
    old_loss = math.inf if old_loss is None else old_loss
    if score == best["score"] and on == "target":  # the released rule: strictly better only
        return best, False, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}): the released "
                             "trainer keeps the earlier epoch")
    if score != best["score"]:
        if score > best["score"]:
            return new, True, f"{on} top-1 {score:.2f} > {best['score']:.2f} (epoch {best['epoch']})"
        return best, False, f"{on} top-1 {score:.2f} < {best['score']:.2f} (epoch {best['epoch']})"
    if loss != old_loss:
        if loss < old_loss:
            return new, True, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}); {on} loss "
                               f"{loss:.4g} < {old_loss:.4g}")
        return best, False, (f"{on} top-1 ties epoch {best['epoch']} ({score:.2f}); {on} loss "
                             f"{loss:.4g} >= {old_loss:.4g}")
    return new, True, f"{on} top-1 and loss tie epoch {best['epoch']}: the later epoch"


def check_run_folder(out: Path, resume: bool) -> None:
    """The run folder before anything is loaded: a folder, not a cache's or a grid's, holding a
    run exactly when resuming one."""
    if out.is_file():
        raise RunFolderError(f"--out {out} is a file; give a folder for the run")
    for marker, what in FOREIGN.items():
        if (out / marker).exists():
            raise RunFolderError(f"--out {out} is {what} folder; give a folder of its own for the run")
    if resume and not (out / LAST).exists():
        raise CheckpointError(f"{out / LAST}: checkpoint not found; nothing to resume")
    if not resume and (out / LAST).exists():
        raise CheckpointError(f"{out} already holds a run; pass --resume to continue it, or "
                              "choose another --out")


def json_line(row: dict) -> str:
    """One metrics.jsonl line, always valid JSON: a non-finite number is written as null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def config_header() -> str:
    """config.yaml's first lines: what wrote it (the version, and a checkout's commit)."""
    p = provenance()
    return (f"# written by xmic {p['version']}" + (f", commit {p['commit']}" if p["commit"] else "")
            + "\n")

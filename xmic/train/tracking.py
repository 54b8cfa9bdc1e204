"""Where a run's progress goes: ``RUN/train.log`` always, TensorBoard and Weights & Biases when
asked (``log.tensorboard=true``, ``log.wandb=true``; optional extras).

Inputs: the run folder, the ``TrainConfig`` (its ``log`` section) and its values as training
reports them: per step (global step, loss, lr; handed over once per epoch, so training never
waits on the device for them) and per epoch (``metrics.jsonl``'s row). Output: the same numbers
under grouped tags, ``train/loss``, ``train/lr`` per step and ``train/…``, ``heldout/…``,
``target/…`` per epoch, and the run's hyper-parameters with its selected epoch's metrics at the
end. W&B runs offline (``RUN/wandb/offline-run-*``, `wandb sync` later) unless
``log.wandb_mode`` or ``WANDB_MODE`` says otherwise; runs of a grid share its name as group.
"""
from __future__ import annotations

import os
from pathlib import Path

from xmic.config import ConfigError, config_to_dict
from xmic.files.atomic import append_line, make_dirs
from xmic.provenance import provenance
from xmic.train.run_folder import LOG, TENSORBOARD, WANDB

PREFIXES = (("train_", "train/"), ("heldout_", "heldout/"), ("target_", "target/"))


def tag(key: str) -> str:
    """metrics.jsonl's key -> a grouped tag: heldout_top1 -> heldout/top1, the epoch's mean
    train_loss -> train/epoch_loss (train/loss is each step's)."""
    if key == "train_loss":
        return "train/epoch_loss"
    for prefix, group in PREFIXES:
        if key.startswith(prefix):
            return group + key[len(prefix):]
    return f"train/{key}" if key in ("lr", "samples_per_s") else f"epoch/{key}"


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class Printer:
    """``echo`` that also keeps every line for RUN/train.log: lines printed before the run folder
    exists are held, then handed over when ``keep`` names where they go."""

    def __init__(self, echo):
        self._echo, self._early, self._sink = echo, [], None

    def __call__(self, text: str) -> None:
        self._echo(text)
        if self._sink is None:
            self._early.append(text)
        else:
            self._sink(text)

    def keep(self, sink) -> None:
        self._sink = sink
        for text in self._early:
            sink(text)
        self._early.clear()


class Tracking:
    def __init__(self, out: Path, cfg, name: str):
        self.out, self.cfg = Path(out), cfg
        self.board = self.wandb = None
        if cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("log.tensorboard=true needs the tensorboard package: pip install "
                                  "tensorboard (or xmic[tensorboard])") from None
            self.board = SummaryWriter(log_dir=str(make_dirs(self.out / TENSORBOARD, self.out)))
        if cfg.log.wandb:
            try:
                import wandb
            except ImportError:
                raise ConfigError("log.wandb=true needs the wandb package: pip install wandb (or "
                                  "xmic[wandb])") from None
            mode = os.environ.get("WANDB_MODE") or cfg.log.wandb_mode
            self.wandb = wandb.init(project=cfg.log.wandb_project, group=cfg.log.group or None,
                                    name=name, dir=str(make_dirs(self.out / WANDB, self.out)),
                                    mode=mode, config=flat(config_to_dict(cfg)), reinit="finish_previous",
                                    resume="allow", id=_run_id(self.out))

    def echo(self, text: str) -> None:
        """A printed line, kept in RUN/train.log."""
        append_line(self.out / LOG, text.rstrip("\n") + "\n", self.out)

    def steps(self, first: int, losses: list[float], lrs: list[float]) -> None:
        for i, (loss, lr) in enumerate(zip(losses, lrs)):
            if self.board is not None:
                self.board.add_scalar("train/loss", loss, first + i)
                self.board.add_scalar("train/lr", lr, first + i)
            if self.wandb is not None:
                self.wandb.log({"train/loss": loss, "train/lr": lr}, step=first + i)

    def epoch(self, row: dict, step: int) -> None:
        values = {tag(k): v for k, v in row.items() if isinstance(v, float) and k != "lr"}
        values["epoch"] = row["epoch"]
        if self.board is not None:
            for k, v in values.items():
                self.board.add_scalar(k, v, row["epoch"])
            self.board.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self, best: dict | None) -> None:
        final = {tag(k): v for k, v in (best or {}).items() if isinstance(v, float)}
        if self.board is not None:
            hp = {k: v for k, v in flat(config_to_dict(self.cfg)).items()
                  if isinstance(v, (int, float, str, bool))}
            self.board.add_hparams(hp, {f"hparam/{k}": v for k, v in final.items()} or
                                   {"hparam/none": 0.0}, run_name=".")
            self.board.close()
        if self.wandb is not None:
            self.wandb.summary.update({**final, "xmic": provenance()})
            self.wandb.finish()


def _run_id(out: Path) -> str:
    """A W&B run id stable for a run folder (a resumed run continues its W&B run)."""
    import hashlib
    return hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]

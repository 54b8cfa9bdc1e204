"""``train_stacked``: several seeds of one method trained as one stacked model, each written
to its own run folder exactly as ``train`` writes it.

Inputs: a cache path, the members' ``TrainConfig``s (identical but for ``seed``), one fresh
output folder per member, ``echo`` and a bank loader (a grid's memo). Outputs, per folder:
``config.yaml``, ``last.pt`` (every epoch; with the member's own slice of the AdamW state, so
``train(..., resume=True)`` continues it alone), ``checkpoint.pt`` (the selected epoch),
``metrics.jsonl``, ``train_curve.png``, ``train.log`` and the tracking ``log.*`` asks for.
Returns one summary per member, as ``train`` returns. The data (one bank in memory), held-out
split, initial weights per seed and selection rule are ``train``'s own (``xmic.train.loop``);
the stacked step is ``xmic.train.stacked``.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from xmic.cache import Cache
from xmic.config import dump_config, resolve_device
from xmic.files.atomic import write_text_atomic
from xmic.train.build import build_model, check_inputs, model_dims
from xmic.train.config import TrainConfig
from xmic.train.data import load_bank
from xmic.train.loop import (check_run_folder, checkpoint_context, config_header, load_run_data,
                             log_epoch, run_summary, save_epoch, score_epoch, select_epoch,
                             selection_source, write_curve)
from xmic.train.run_folder import CONFIG
from xmic.train.stacked import StackedRuns, stackable
from xmic.train.tracking import Tracking


def train_stacked(cache_path, cfgs: list[TrainConfig], outs: list[Path], echo=print,
                  bank_loader=load_bank) -> list[dict]:
    cfg = cfgs[0]
    if not stackable(cfg):
        raise ValueError(f"{cfg.method} is not stacked (a frozen text tower in its forward)")
    outs = [Path(o) for o in outs]
    for out in outs:
        check_run_folder(out, resume=False)
    cache = Cache.open(cache_path)
    inputs = check_inputs(cache, cfg)
    device = resolve_device(cfg.device)
    data = load_run_data(cache, cfg, inputs, device, bank_loader, None)
    dims = model_dims(cfg, inputs)
    models = []
    for c in cfgs:  # each member's initial weights, drawn as its own run draws them
        torch.manual_seed(c.seed)
        models.append(build_model(c, dims["text"], dims["cond"], len(inputs.vocab.classes),
                                  None).to(device))
    runs = StackedRuns(cfgs, models, len(data.train), device)
    echo(f"{cfg.method} on {cache.root} split {cfg.split}: seeds {[c.seed for c in cfgs]} as one "
         f"stacked model, {len(data.train)} training segments; device {device}")
    selected_on = selection_source(cfg, data)
    members = []
    for c, out in zip(cfgs, outs):
        out.mkdir(parents=True, exist_ok=True)
        tracking = Tracking(out, c, out.name)
        tracking.echo(f"trained with seeds {[x.seed for x in cfgs]} as one stacked model")
        write_text_atomic(out / CONFIG, config_header() + dump_config(c), out)
        context = checkpoint_context(c, inputs, cache, dims, selected_on, None)
        members.append({"cfg": c, "out": out, "tracking": tracking, "context": context,
                        "history": [], "best": None})
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.time()
            lr = runs.opt.param_groups[0]["lr"]
            stats, step_losses, step_lrs = runs.epoch(data.train, data.w, epoch,
                                                      ", ".join(map(str, outs)))
            for s, m in enumerate(members):
                row = {"epoch": epoch, "lr": lr, **stats[s]}
                m["tracking"].steps((epoch - 1) * steps_per_epoch + 1,
                                    step_losses[:, s].tolist(), step_lrs)
                model = runs.member(s)
                score_epoch(model, data, m["cfg"], row, m["out"])
                m["best"], row["selected"], row["selected_because"] = select_epoch(
                    row, m["best"], epoch)
                row["seconds"] = time.time() - t0
                m["history"].append(row)
                state = {"model": model.state_dict(), "epoch": epoch, "history": m["history"],
                         "best": m["best"], "optimizer": runs.optimizer_state(s),
                         "scaler": runs.scaler.state_dict(),
                         "scheduler": runs.sched.state_dict(),
                         "generator": runs.gens[s].get_state(), **m["context"]}
                save_epoch(m["out"], state, row["selected"])
                m["tracking"].epoch(row, epoch * steps_per_epoch)
                log_epoch(row, lambda line, t=m["tracking"]: (echo(line), t.echo(line)))
    except BaseException as e:
        for m in members:
            m["tracking"].echo(f"stopped: {type(e).__name__}: {e}")
        raise
    finally:
        for m in members:
            m["tracking"].close(m["best"])
    for m in members:
        write_curve(m["out"], m["history"], m["cfg"], cache.dataset)
    return [run_summary(m["out"], m["best"], selected_on, m["history"], data) for m in members]

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

import io
import time
from pathlib import Path

import torch

from xmic.cache import Cache
from xmic.config import config_to_dict, dump_config, resolve_device
from xmic.files.atomic import write_bytes_atomic, write_text_atomic
from xmic.provenance import provenance
from xmic.train.build import build_model, check_inputs, model_dims
from xmic.train.checkpoint import save_checkpoint
from xmic.train.config import TrainConfig
from xmic.train.data import load_bank
from xmic.train.loop import (check_run_folder, config_header, json_line, load_run_data,
                             log_epoch, score_epoch, select_epoch, tower_record)
from xmic.train.plots import plot_curve
from xmic.train.run_folder import CHECKPOINT, CONFIG, CURVE, LAST, METRICS
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
    selected_on = ("target test data " + cfg.select_on_target_test_data if data.target
                   else "held-out source videos" if data.held is not None else "last epoch")
    members = []
    for c, out in zip(cfgs, outs):
        out.mkdir(parents=True, exist_ok=True)
        tracking = Tracking(out, c, out.name)
        tracking.echo(f"trained with seeds {[x.seed for x in cfgs]} as one stacked model")
        write_text_atomic(out / CONFIG, config_header() + dump_config(c), out)
        context = {"config": config_to_dict(c), "fingerprints": inputs.fingerprints,
                   "method": c.method, "classes": inputs.vocab.classes,
                   "selected_on": selected_on, "source_dataset": cache.dataset,
                   "cache": str(cache.root), "dims": dims, "provenance": provenance(),
                   **tower_record(None)}
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
                save_checkpoint(m["out"] / LAST, state)
                if row["selected"]:
                    save_checkpoint(m["out"] / CHECKPOINT, state)
                write_text_atomic(m["out"] / METRICS,
                                  "".join(json_line(r) for r in m["history"]), m["out"])
                m["tracking"].epoch(row, epoch * steps_per_epoch)
                log_epoch(row, lambda line, t=m["tracking"]: (echo(line), t.echo(line)))
    except BaseException as e:
        for m in members:
            m["tracking"].echo(f"stopped: {type(e).__name__}: {e}")
        raise
    finally:
        for m in members:
            m["tracking"].close(m["best"])
    out_rows = []
    for m in members:
        png = io.BytesIO()
        c = m["cfg"]
        plot_curve(m["history"], png, f"{c.method} · {c.label} · {cache.dataset} {c.split} · "
                   f"seed {c.seed}")
        write_bytes_atomic(m["out"] / CURVE, png.getbuffer(), m["out"])
        out_rows.append({"out": str(m["out"]), "best": m["best"], "selected_on": selected_on,
                         "epochs": len(m["history"]), "skipped": data.full.skipped,
                         "train_segments": len(data.train),
                         "heldout_segments": len(data.held) if data.held is not None else 0})
    return out_rows

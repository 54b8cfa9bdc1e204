"""``xmic train``: fit a method on a cache split, one run or several seeds."""
from __future__ import annotations

from pathlib import Path

import click

from xmic.cli.base import CacheSource, resolve_cache, RecordChoice, UsageError, XmicCommand, method_names
from xmic.config import load_config

@click.command("train", cls=XmicCommand)
@click.option("--cache", "cache_dir", type=CacheSource(), required=True,
              help="A cache folder, or hf-hub:ORG/REPO[@REV] / file:///PATH of a published one.")
@click.option("--split", default=None, help="Training split (default: train).")
@click.option("--label", type=click.Choice(["noun", "verb"]), default=None)
@click.option("--method", type=RecordChoice(method_names), default=None,
              help="Training method (default: xmic).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--epochs", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--seeds", default=None, help="Several seeds, e.g. 1,2,3: runs go to OUT/seed-N/.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Train config YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last.pt.")
@click.option("--model", help="coop/cocoop: the text tower's open_clip model (default: the one "
              "recorded with the cache's vocabulary).")
@click.option("--weights", help="coop/cocoop: the text tower's weights (default: those recorded "
              "with the vocabulary); refused unless they made the vocabulary.")
def train_cmd(cache_dir, split, label, method, out, epochs, seed, seeds, device, config_path,
              sets, resume, model, weights):
    """Fit the X-MIC adapter or a baseline on cached features (docs/method.md §3-5).

    Writes OUT/config.yaml, checkpoint.pt (selected epoch), last.pt, metrics.jsonl and
    train_curve.png. Model selection uses held-out source videos unless
    --set select_on_target_test_data=CACHE:SPLIT asks for the released (test-set) behaviour.
    """
    from dataclasses import replace

    from xmic.train.config import TextTowerConfig, TrainConfig
    from xmic.train.loop import train
    cache_dir = resolve_cache(cache_dir)
    given = {"split": split, "label": label, "method": method, "epochs": epochs, "seed": seed,
             "device": device}
    overrides = [*sets] + [f"{k}={v}" for k, v in given.items() if v is not None]
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else [None]
    except ValueError:
        raise UsageError(f"--seeds {seeds!r}: expected integers, e.g. 1,2,3") from None
    for s in seed_list:
        extra = [f"seed={s}"] if s is not None else []
        cfg = load_config(TrainConfig, config_path, overrides + extra)
        if (model or weights) and not cfg.record.tower:
            raise UsageError(f"--model/--weights name the text tower of coop/cocoop; method "
                            f"{cfg.method} reads the cache's embeddings only")
        if model or weights:  # recorded in the run's config (model.text_tower)
            cfg = replace(cfg, model=replace(cfg.model, text_tower=TextTowerConfig(
                model or cfg.model.text_tower.model, weights or cfg.model.text_tower.weights)))
        run_dir = out / f"seed-{s}" if s is not None else out
        try:
            summary = train(cache_dir, cfg, run_dir, resume=resume, echo=click.echo)
        except KeyboardInterrupt:
            from xmic.train.loop import TrainingInterrupted
            again = "the same command with --resume" if (run_dir / "last.pt").exists() else \
                "the same command"
            raise TrainingInterrupted(
                f"interrupted: {run_dir}/last.pt holds the last finished epoch (the epoch in "
                f"progress is lost); run {again} to continue") from None
        b = summary["best"]
        click.echo(f"run {run_dir}: selected epoch {b['epoch']} on {summary['selected_on']} "
                   f"(score {b['score']:.2f})")

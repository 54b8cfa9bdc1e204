"""``xmic evaluate``: score a run on a cache split (``xmic evaluate RUN ...``), and the paper's table."""
from __future__ import annotations

import json
from pathlib import Path

import click

from xmic.cli.base import CacheSource, resolve_cache, UsageError, XmicGroup


class DefaultCommandGroup(XmicGroup):
    """``xmic evaluate RUN ...`` runs the ``run`` command; ``xmic evaluate table ...`` the table."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup)
def evaluate():
    """Score runs in-dataset and cross-dataset (`xmic evaluate RUN ...`); the paper's table."""


@evaluate.command("run")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--cache", "cache_dir", type=CacheSource(), required=True,
              help="A cache folder, or hf-hub:ORG/REPO[@REV] / file:///PATH of a published one.")
@click.option("--split", required=True)
@click.option("--class-splits", type=click.Path(path_type=Path),
              help="Folder of X-MIC's {target}_{source}_{common|non_common}_*.txt lists.")
@click.option("--out", type=click.Path(path_type=Path), help="Default: RUN/eval/DATASET-SPLIT")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
@click.option("--model", help="coop/cocoop: the text tower's model (default: the run's).")
@click.option("--weights", help="coop/cocoop: the text tower's weights (default: the run's).")
@click.option("--classes", type=click.Choice(["all", "base", "novel"]), default="all",
              help="A run trained base-to-novel: score its base (or novel) classes' segments "
                   "among those classes only (RUN/eval/DATASET-SPLIT-base|novel).")
def evaluate_cmd(run_dir, cache_dir, split, class_splits, out, device, as_json, model, weights,
                 classes):
    """Score RUN on a cache split with that cache's own vocabulary for the run's label."""
    from xmic.evaluate.run import evaluate_run
    from xmic.train.config import TextTowerConfig
    cache_dir = resolve_cache(cache_dir)
    m = evaluate_run(run_dir, cache_dir, split, class_splits, out, device,
                     text_tower=TextTowerConfig(model or "", weights or "")
                     if model or weights else None, classes=classes)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    crits = sorted(k[3:] for k in m if k.startswith("hm_"))
    part = "" if classes == "all" else f" {classes} classes"
    parts = [f"{m['method']} {m['source_dataset']} -> {m['dataset']} {m['split']}{part} ({m['label']}, "
             f"n={m['n']}): top-1 {m['top1']:.1f}, top-5 {m['top5']:.1f}, class-mean "
             f"{m['mean_class_acc']:.1f}"]
    for c in crits:
        f = (lambda v: "–" if v is None else f"{v:.1f}")
        parts.append(f"  {c}: shared {f(m[f'shared_{c}'])} ({m[f'shared_{c}_classes']} classes), "
                     f"novel {f(m[f'novel_{c}'])}, HM {f(m[f'hm_{c}'])}")
    click.echo("\n".join(parts))


@evaluate.command("table")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--criterion", default="exact", show_default=True,
              help="Shared/novel criterion: exact, semantic or default (X-MIC's plain lists).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md")
@click.option("--out", type=click.Path(path_type=Path), help="Write the table here too.")
def evaluate_table(paths, criterion, fmt, out):
    """The paper's table from run folders or metrics.json files (mean ± std over seeds)."""
    from xmic.evaluate.table import build_table, collect, format_table
    skipped: list = []
    metrics = collect(paths, skipped)
    for path, why in skipped[:20]:
        click.echo(f"WARNING: {path} left out: {why}", err=True)
    if not metrics:
        raise UsageError(f"no usable metrics.json found under {[str(p) for p in paths]}; run "
                        "`xmic evaluate RUN --cache ... --split ...` first")
    text = format_table(*build_table(metrics, criterion), fmt)
    if out:
        from xmic.files.atomic import write_text_atomic
        write_text_atomic(Path(out), text, Path(out).parent)
    click.echo(text, nl=False)

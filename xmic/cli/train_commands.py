"""``xmic train``, ``xmic evaluate`` (run, table) and ``xmic predict``."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from xmic.cli.base import RecordChoice, UsageError, XmicCommand, XmicGroup, method_names
from xmic.config import XmicError, load_config

@click.command("train", cls=XmicCommand)
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), required=True)
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
        summary = train(cache_dir, cfg, run_dir, resume=resume, echo=click.echo)
        b = summary["best"]
        click.echo(f"run {run_dir}: selected epoch {b['epoch']} on {summary['selected_on']} "
                   f"(score {b['score']:.2f})")


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
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", required=True)
@click.option("--class-splits", type=click.Path(path_type=Path),
              help="Folder of X-MIC's {target}_{source}_{common|non_common}_*.txt lists.")
@click.option("--out", type=click.Path(path_type=Path), help="Default: RUN/eval/DATASET-SPLIT")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
@click.option("--model", help="coop/cocoop: the text tower's model (default: the run's).")
@click.option("--weights", help="coop/cocoop: the text tower's weights (default: the run's).")
def evaluate_cmd(run_dir, cache_dir, split, class_splits, out, device, as_json, model, weights):
    """Score RUN on a cache split with that cache's own vocabulary for the run's label."""
    from xmic.evaluate.run import evaluate_run
    from xmic.train.config import TextTowerConfig
    m = evaluate_run(run_dir, cache_dir, split, class_splits, out, device,
                     text_tower=TextTowerConfig(model or "", weights or "")
                     if model or weights else None)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    crits = sorted(k[3:] for k in m if k.startswith("hm_"))
    parts = [f"{m['method']} {m['source_dataset']} -> {m['dataset']} {m['split']} ({m['label']}, "
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


@click.command("predict", cls=XmicCommand)
@click.argument("clips", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True)
@click.option("--list", "clip_list", type=click.Path(path_type=Path, exists=True),
              help="A CSV of clips: a clip column, optional start, end (seconds), fps.")
@click.option("--classes", help='Comma-separated class names, e.g. "knife,spoon,door".')
@click.option("--vocab", help="CACHE:NAME, a cache vocabulary, e.g. caches/ego4d:noun.")
@click.option("--boxes", type=click.Path(path_type=Path, exists=True), help="Hand boxes.")
@click.option("--start", type=float, help="Seconds.")
@click.option("--end", type=float, help="Seconds.")
@click.option("--fps", type=float, help="Frame rate of a frame folder (with --start/--end).")
@click.option("--top-k", default=5, show_default=True)
@click.option("--model", help="Encoder (default: the one that made the run's cache).")
@click.option("--weights", help="Encoder weights (default: those that made the run's cache).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@click.option("--out", type=click.Path(path_type=Path),
              help="Write one row per clip (.csv or .parquet): clip, frames, class_1, score_1, "
                   "prob_1, ...")
@click.option("--json", "as_json", is_flag=True)
def predict(clips, run_dir, clip_list, classes, vocab, boxes, start, end, fps, top_k, model,
            weights, device, out, as_json):
    """Top-k classes of clips (videos or frame folders, or a --list CSV) for any vocabulary,
    with a trained run; the run and encoder are loaded once for all of them."""
    from xmic.evaluate.predict import ClipPredictor, read_clip_list
    items = [{"clip": c, "start": start, "end": end, "fps": fps} for c in clips]
    items += read_clip_list(clip_list) if clip_list else []
    if not items:
        raise UsageError("give one or more clips, or --list CLIPS.csv")
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise UsageError(f"--out {out}: give a .csv or .parquet file")
    predictor = ClipPredictor(run_dir, classes=classes, vocab=vocab, boxes=boxes, top_k=top_k,
                              model=model, weights=weights, device=device)
    results, failed = [], []
    for item in items:
        try:
            r = predictor(item["clip"], item["start"], item["end"], item["fps"])
        except XmicError as e:  # one clip's problem: the others are still predicted
            if len(items) == 1:
                raise
            failed.append((item["clip"], str(e)))
            click.echo(f"{item['clip']}: FAILED: {e}", err=True)
            continue
        results.append({**item, **r})
        if as_json:
            continue
        for n in r["notes"]:
            click.echo(f"note: {n}")
        click.echo(f"{item['clip']}: {r['frames']} frames, {r['method']} run {run_dir}")
        for i, t in enumerate(r["top"], 1):
            click.echo(f"  {i}. {t['class']:<30} score {t['score']:8.3f}  p {t['prob']:.3f}")
    if as_json:
        js = [{"clip": str(r["clip"]), "run": str(run_dir), "frames": r["frames"], "top": r["top"],
               "notes": r["notes"]} for r in results]
        click.echo(json.dumps(js[0] if len(js) == 1 and not clip_list else js, indent=1))
    if out is not None and results:
        _write_predictions(out, results)
    if failed:
        click.echo(f"{len(failed)} of {len(items)} clip(s) failed (named above); the "
                   f"{len(results)} others are predicted" + (f" and written to {out}" if out else ""),
                   err=True)
        sys.exit(1)


def _write_predictions(out: Path, results: list[dict]) -> None:
    import pandas as pd
    rows = []
    for r in results:
        row = {"clip": str(r["clip"]), "start": r["start"], "end": r["end"], "frames": r["frames"]}
        for i, t in enumerate(r["top"], 1):
            row.update({f"class_{i}": t["class"], f"score_{i}": t["score"], f"prob_{i}": t["prob"]})
        rows.append(row)
    df = pd.DataFrame(rows)
    buf = io.BytesIO()
    if out.suffix == ".parquet":
        df.to_parquet(buf, index=False)
    else:
        buf.write(df.to_csv(index=False).encode())
    from xmic.files.atomic import write_bytes_atomic
    write_bytes_atomic(out, buf.getvalue(), out.parent)
    click.echo(f"wrote {out}: {len(rows)} clip(s)")

"""``xmic predict``: score raw clips (videos or frame folders) with a trained run."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from xmic.cli.base import UsageError, XmicCommand
from xmic.config import XmicError


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
    results, failed, outcomes = [], [], []  # outcomes: (item, result or None, error or None)
    for item in items:
        try:
            r = predictor(item["clip"], item["start"], item["end"], item["fps"])
        except XmicError as e:  # one clip's problem: the others are still predicted
            if len(items) == 1:
                raise
            failed.append((item["clip"], str(e)))
            outcomes.append((item, None, str(e)))
            click.echo(f"{item['clip']}: FAILED: {e}", err=True)
            continue
        results.append({**item, **r})
        outcomes.append((item, r, None))
        if as_json:
            continue
        for n in r["notes"]:
            click.echo(f"note: {n}")
        click.echo(f"{item['clip']}: {r['scored']} bin-centre frames of frames {r['span'][0]}.."
                   f"{r['span'][1]} scored ({r['frames']} encoded), {r['method']} run {run_dir}")
        for i, t in enumerate(r["top"], 1):
            click.echo(f"  {i}. {t['class']:<30} score {t['score']:8.3f}  p {t['prob']:.3f}")
    if as_json:
        js = [{"clip": str(r["clip"]), "run": str(run_dir), "frames": r["frames"],
               "scored": r["scored"], "span": r["span"], "top": r["top"], "notes": r["notes"]}
              for r in results]
        click.echo(json.dumps(js[0] if len(js) == 1 and not clip_list else js, indent=1))
    if out is not None:
        _write_predictions(out, outcomes)
    if failed:
        click.echo(f"{len(failed)} of {len(items)} clip(s) failed (named above); the "
                   f"{len(results)} others are predicted" + (f" and written to {out}" if out else ""),
                   err=True)
        sys.exit(1)


def _write_predictions(out: Path, outcomes: list[tuple]) -> None:
    """One row per clip in the order given: its top classes, or the reason it failed."""
    import pandas as pd
    rows = []
    for item, r, error in outcomes:
        row = {"clip": str(item["clip"]), "start": item["start"], "end": item["end"],
               "frames": r["frames"] if r else None, "error": error}
        for i, t in enumerate(r["top"] if r else [], 1):
            row.update({f"class_{i}": t["class"], f"score_{i}": t["score"], f"prob_{i}": t["prob"]})
        rows.append(row)
    df = pd.DataFrame(rows)
    df = df[[c for c in df.columns if c != "error"] + ["error"]]  # the reason, last
    buf = io.BytesIO()
    if out.suffix == ".parquet":
        df.to_parquet(buf, index=False)
    else:
        buf.write(df.to_csv(index=False).encode())
    from xmic.files.atomic import write_bytes_atomic
    write_bytes_atomic(out, buf.getvalue(), out.parent)
    bad = sum(1 for _, r, _ in outcomes if r is None)
    click.echo(f"wrote {out}: {len(rows)} clip(s)" + (f", {bad} failed (column error)"
                                                     if bad else ""))

"""``xmic extract``: plan, run, text, convert-weights."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from xmic.cli.base import (RecordChoice, SideFilesCommand, UsageError, XmicGroup, backend_names,
                           cache_config, dataset_kinds, extract_config)
from xmic.files.long_lists import SHOWN, some, write_all


@click.group(cls=XmicGroup)
def extract():
    """Frozen CLIP embeddings of frames, hand crops and class names."""


def _shard_range(text, planned):
    """Shard numbers of ``--shards`` (``0-9,12``): the syntax first, then each range checked
    against the plan's shard count (``planned()``) before it is expanded."""
    if not text:
        return None
    ranges = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        if not a.isdigit() or not (b or a).isdigit() or int(b or a) < int(a):
            raise UsageError(f"--shards {text!r}: {part!r} is not a shard number or a range "
                            "like 0-9; give e.g. --shards 0-9,12")
        ranges.append((int(a), int(b or a)))
    n = planned()
    top = max(hi for _, hi in ranges)
    if top >= n:
        raise UsageError(f"--shards {text!r}: shard {top} is outside the plan's {n} shard(s) "
                         f"(0-{n - 1})")
    return list(dict.fromkeys(i for lo, hi in ranges for i in range(lo, hi + 1)))


@extract.command("plan", cls=SideFilesCommand)
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--dataset", type=RecordChoice(dataset_kinds), required=True)
@click.option("--annotations", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--root", type=click.Path(path_type=Path), required=True, help="Frames/videos root.")
@click.option("--split", default="train", show_default=True)
@click.option("--views", default="full_frame,hand_crop", show_default=True)
@click.option("--boxes", type=click.Path(path_type=Path, exists=True),
              help="Hand-object boxes: a folder of per-video pickles VIDEO.pkl (EPIC-100's "
                   "detections or the 100DOH detector's output), an X-MIC box pickle, or a "
                   ".parquet/.csv box table (docs/hand-boxes.md).")
@click.option("--allow-missing", is_flag=True,
              help="Plan segments whose frames or boxes are missing; they are recorded failed.")
@click.option("--inputs", type=click.Choice(["moved", "changed"]),
              help="Re-planning a split from another --root/--boxes: 'moved' keeps its committed "
                   "shards, 'changed' redoes them (default: refuse while any are committed).")
@click.option("--allow-low-coverage", is_flag=True,
              help="Plan even when fewer than --coverage-floor of the frames to encode have a "
                   "hand above hand_score (their hand crops are full frames).")
@click.option("--coverage-floor", type=click.FloatRange(0, 100), default=50.0, show_default=True,
              help="Least share (%) of the frames to encode with a hand above hand_score.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Crop thresholds and sampling (hand_score, object_score, min_box_px, "
                   "sampling, per_bin, bins): coverage is measured with them, and `extract run` "
                   "takes them as its defaults.")
@click.option("--shard-size", type=int, help="Segments per shard (new cache).")
@click.option("--backend", type=RecordChoice(backend_names),
              help="Backend of a new cache (default: zarr).")
def extract_plan(cache_dir, dataset, annotations, root, split, views, boxes, allow_missing, inputs,
                 allow_low_coverage, coverage_floor, sets, shard_size, backend, side_files):
    """Write the segment index and a fixed list of shards (work units) into CACHE, after
    checking that every segment's frames (and, for hand_crop, boxes) exist and that enough
    of the frames to encode have a usable hand box."""
    from xmic.extract.planning import PLANNED_SETTINGS, PlanPolicy, SplitSource, plan
    bad = [t for t in sets if t.partition("=")[0].strip() not in PLANNED_SETTINGS]
    if bad:
        raise UsageError(f"--set {bad[0]!r}: plan takes only {', '.join(PLANNED_SETTINGS)}; "
                         "the model and the rest are `xmic extract run` settings")
    cache_sets = ([f"shard_segments={shard_size}"] * (shard_size is not None)
                  + [f"backend={backend}"] * bool(backend))
    cfg = cache_config(None, cache_sets) if cache_sets else None
    s = plan(cache_dir, SplitSource(dataset, annotations, root, split, boxes, side_files),
             tuple(views.split(",")), cfg, extract_config(None, sets),
             PlanPolicy(allow_missing, inputs, allow_low_coverage, coverage_floor / 100))
    for line in s["changes"]:
        click.echo(f"inputs changed: {line}")
    if s["missing"]:
        click.echo(f"WARNING: {len(s['missing'])} video(s) planned without their inputs "
                   "(--allow-missing); their segments will be recorded failed:", err=True)
        for vid, why in list(s["missing"].items())[:20]:
            click.echo(f"  {vid}: {why}", err=True)
    c = s["coverage"]
    line = (f"coverage ({dataset} {split}): {c['segments'] - _missing_segments(s)} of "
            f"{c['segments']} segments have their frames")
    if "box_segments" in c:
        line += (f"; hand boxes ({s['box_format']}) on {c['box_segments']} segments "
                 f"({100 * c['box_segment_share']:.1f}%) and {100 * c['box_frame_share']:.1f}% "
                 f"of {c['frames']} frames")
    click.echo(line)
    if "usable_share" in c:
        from xmic.extract.coverage import usable_line
        click.echo(usable_line(dataset, split, c, s["settings"]["hand_score"]))
    click.echo(f"planned {split}: {s['segments']} segments in {s['shards']} shards "
               f"(plan {s['plan_sha256'][:12]})")


def _missing_segments(s: dict) -> int:
    return s["coverage"]["segments_missing"]


@extract.command("run")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--shards", help="Shard numbers to run, e.g. 0-9,12 (default: all).")
@click.option("--model", help="open_clip model name or model-config JSON.")
@click.option("--weights", help="FILE, local-dir:DIR, a pretrained tag (openai) or "
              "hf-hub:ORG/REPO from the Hugging Face cache, or random (tests/demos).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]))
@click.option("--batch-size", type=int)
@click.option("--workers", type=int)
@click.option("--decode", type=click.Choice(["cpu", "gpu"]),
              help="Where JPEG frames are decoded and resized: cpu (Pillow, in the workers) or "
                   "gpu (torchvision on the CUDA device; a cache of its own).")
@click.option("--redo-failed", is_flag=True,
              help="Also re-encode shards committed with failed segments (after fixing the "
                   "inputs); the old ones are kept under views/VIEW/.superseded/.")
@click.option("--config", "config_path", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def extract_run(cache_dir, shards, model, weights, device, precision, batch_size, workers,
                decode, redo_failed, config_path, sets):
    """Extract every pending shard (or --shards) in this process; shards whose attempt
    raised are tried again, shards committed with failed segments only with --redo-failed."""
    from xmic.cache.info import fallback_line
    from xmic.extract.pipeline import run_shards
    from xmic.extract.planning import planned_settings
    planned = planned_settings(cache_dir)
    cfg = extract_config(config_path, sets, base=planned, model=model, weights=weights,
                         device=device, precision=precision, batch_size=batch_size,
                         workers=workers, decode=decode)
    differ = {k: getattr(cfg, k) for k, v in planned.items() if getattr(cfg, k) != v}
    if differ:
        click.echo("WARNING: " + ", ".join(f"{k}={v}" for k, v in differ.items()) + " differ(s) "
                   "from the plan's " + ", ".join(f"{k}={planned[k]}" for k in differ) + ", which "
                   "its coverage was measured with; plan again with --set to measure these",
                   err=True)
    from xmic.cache import Cache
    chosen = _shard_range(shards, lambda: len(Cache.open(cache_dir).shards()))
    s = run_shards(cache_dir, cfg, chosen, echo=click.echo, redo_failed=redo_failed)
    for split, (rows, fell) in s.fallbacks.items():
        click.echo(f"hand crops, {fallback_line(split, rows, fell)}")
    if s.redone:
        click.echo(f"redone: {len(s.redone)} shard(s) that held failed segments "
                   f"({some(s.redone, what='redone shards')})")
    if s.still_broken:
        from xmic.extract.planning import kept_line
        click.echo(kept_line(s.still_broken, "--redo-failed again"), err=True)
    partial = min(s.shards_with_failed_segments, s.shards_done)  # committed, failed by the rule
    click.echo(f"{s.shards_done - partial} shard(s) extracted, {s.shards_skipped} already done, "
               f"{s.shards_failed + partial} failed"
               + (f" ({partial} committed with failed segments)" if partial else "")
               + f", {s.frames} frames, {s.segments_failed} segment(s) failed"
               + (f"; {s.shards_elsewhere} shard(s) extracted by another process (running "
                  "there, or committed there first), left to it" if s.shards_elsewhere else ""))
    for f in s.failures[:SHOWN]:
        click.echo(f"  failed: {f}")
    if len(s.failures) > SHOWN:
        click.echo(f"  and {len(s.failures) - SHOWN} more failure(s) (all {len(s.failures)} in "
                   f"{write_all(s.failures, 'extraction failures')}; `xmic slurm status "
                   f"{cache_dir}` lists them by shard)")
    kept = s.failed_kept
    if kept and not s.still_broken:
        click.echo(f"{len(kept)} shard(s) committed earlier hold failed segments and were left "
                   f"as they are ({some(kept, what='shards with failed segments')}); "
                   f"see `xmic slurm status {cache_dir}`, fix the inputs, then: xmic extract "
                   f"run {cache_dir} --redo-failed")
    if s.segments_failed or s.shards_failed or kept:
        sys.exit(1)


@extract.command("text")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--vocab", type=click.Choice(["noun", "verb", "all"]), default="all")
@click.option("--model", help="Default: the model that made the cache's image views.")
@click.option("--weights", help="Default: the weights that made the cache's image views.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--released-vocabulary", is_flag=True,
              help="EGTEA: the vocabulary as X-MIC's code builds it, [''] + names (an empty-"
                   "prompt class 0 that can win the argmax), to reproduce its EGTEA numbers "
                   "exactly; recorded in the vocabulary and shown in tables.")
@click.option("--templates", metavar="NAME|FILE",
              help="A prompt ensemble instead of the single prompts: kinetics (the CLIP paper's "
                   "28 Kinetics-700 templates), ego (6 first-person ones), or a file with one "
                   "template per line; written as LABEL.NAME (e.g. noun.kinetics).")
@click.option("--config", "config_path", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def extract_text_cmd(cache_dir, vocab, model, weights, device, released_vocabulary, templates,
                     config_path, sets):
    """Encode the class names (bare and zero-shot prompts) as cache vocabularies, through the
    model and weights that made the cache's image views unless --model/--weights say others."""
    from xmic.extract.vocabularies import extract_text, image_model_settings
    base = image_model_settings(cache_dir)
    if model:  # another model: its own weights, not the views'
        base = {k: v for k, v in base.items() if k not in ("model", "weights", "seed")}
    cfg = extract_config(config_path, sets, base=base, model=model, weights=weights,
                         device=device)
    from xmic.extract.templates import read_templates
    group = read_templates(templates) if templates else None
    done = extract_text(cache_dir, cfg, ("noun", "verb") if vocab == "all" else (vocab,),
                        released=released_vocabulary, templates=group)
    for w in done["warnings"]:
        click.echo(f"WARNING: {w}", err=True)
    click.echo("vocabularies: " + ", ".join(f"{k} ({n} classes)"
                                            for k, n in done["vocabularies"].items()))


@extract.command("convert-weights")
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--model", default="ViT-B-16-quickgelu", show_default=True,
              help="open_clip model whose state dict the archive must hold (names and shapes)")
def extract_convert(src, dst, model):
    """OpenAI TorchScript archive (e.g. ViT-B-16.pt) -> safetensors state dict for open_clip.

    Only the archive's tensors are read; none of its TorchScript code runs."""
    from xmic.towers.weight_files import convert_openai_weights
    s = convert_openai_weights(src, dst, model)
    click.echo(f"wrote {dst}: {s['tensors']} tensors, {s['parameters']:,} parameters "
               f"(use with --model {model})")


@extract.command("fetch-weights")
@click.argument("model")
@click.argument("tag")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="New file to write the weights to (its suffix that of the download).")
def extract_fetch_weights(model, tag, out):
    """Download MODEL's weights TAG (a pretrained tag such as openai, or hf-hub:ORG/REPO) into
    the Hugging Face cache and copy them to --out: run on a login node, then give --weights
    FILE on compute nodes without a network."""
    from xmic.files.atomic import sha256_file
    from xmic.towers.encoders import resolve_model
    from xmic.towers.weight_files import fetch_weights
    name, _ = resolve_model(model)
    path = fetch_weights(name, tag, out)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(path)}); "
               f"use: --model {model} --weights {path}")

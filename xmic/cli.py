"""The ``xmic`` command line: one group per pipeline stage, plus ``demo``.

Inputs: command-line arguments. Outputs: whatever the stage writes, and one-line errors
(``error: ...``, exit 2) for any ``XmicError``. The only module that imports click.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from xmic.config import XmicError, load_config


def _fail(e: Exception):
    click.echo(f"error: {e}", err=True)
    sys.exit(getattr(e, "exit_code", 2))  # 2: a mistake to fix; 1: the work itself failed


class XmicGroup(click.Group):
    """Turns XmicError into a one-line message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XmicError as e:
            _fail(e)


@click.group(cls=XmicGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """xmic: X-MIC adapters for cross-dataset egocentric action recognition, on a feature cache.

    Stages: extract -> cache -> slurm -> train -> evaluate. Run `xmic demo` for a first look.
    """


@main.group(cls=XmicGroup)
def cache():
    """Inspect, check, import and convert feature caches."""


@main.group(cls=XmicGroup)
def extract():
    """Frozen CLIP embeddings of frames, hand crops and class names."""


def _extract_config(config_path, sets, **given):
    from xmic.extract.config import ExtractConfig
    extra = [f"{k}={v}" for k, v in given.items() if v is not None]
    return load_config(ExtractConfig, config_path, [*sets, *extra])


def _shard_range(text):
    if not text:
        return None
    out = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        if not a.isdigit() or not (b or a).isdigit() or int(b or a) < int(a):
            raise XmicError(f"--shards {text!r}: {part!r} is not a shard number or a range "
                            "like 0-9; give e.g. --shards 0-9,12")
        out += list(range(int(a), int(b or a) + 1))
    return out


@extract.command("plan")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Choice(["epic", "ego4d", "egtea", "csv"]), required=True)
@click.option("--annotations", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--root", type=click.Path(path_type=Path), required=True, help="Frames/videos root.")
@click.option("--split", default="train", show_default=True)
@click.option("--views", default="full_frame,hand_crop", show_default=True)
@click.option("--boxes", type=click.Path(path_type=Path, exists=True),
              help="EPIC detection pickles folder, X-MIC box pickle, or a box table.")
@click.option("--shard-size", type=int, help="Segments per shard (new cache).")
@click.option("--backend", type=click.Choice(["zarr", "hdf5"]), help="Backend (new cache).")
@click.option("--taxonomy", type=click.Path(path_type=Path), help="Ego4D taxonomy JSON.")
@click.option("--noun-classes", type=click.Path(path_type=Path))
@click.option("--verb-classes", type=click.Path(path_type=Path))
@click.option("--video-info", type=click.Path(path_type=Path))
def extract_plan(cache_dir, dataset, annotations, root, split, views, boxes, shard_size, backend,
                 taxonomy, noun_classes, verb_classes, video_info):
    """Write the segment index and a fixed list of shards (work units) into CACHE."""
    from xmic.extract.pipeline import plan
    sets = [f"shard_segments={shard_size}"] * bool(shard_size) + [f"backend={backend}"] * bool(backend)
    cfg = _cache_config(None, sets) if sets else None
    s = plan(cache_dir, dataset, annotations, root, split, tuple(views.split(",")), boxes, cfg,
             taxonomy=taxonomy, noun_classes=noun_classes, verb_classes=verb_classes,
             video_info=video_info)
    click.echo(f"planned {split}: {s['segments']} segments in {s['shards']} shards "
               f"(plan {s['plan_sha256'][:12]})")


@extract.command("run")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--shards", help="Shard numbers to run, e.g. 0-9,12 (default: all).")
@click.option("--model", help="open_clip model name or model-config JSON.")
@click.option("--weights", help="FILE, local-dir:DIR, or random (tests/demos).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]))
@click.option("--batch-size", type=int)
@click.option("--workers", type=int)
@click.option("--config", "config_path", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def extract_run(cache_dir, shards, model, weights, device, precision, batch_size, workers,
                config_path, sets):
    """Extract every uncommitted shard (or --shards) in this process."""
    from xmic.extract.pipeline import run_shards
    cfg = _extract_config(config_path, sets, model=model, weights=weights, device=device,
                          precision=precision, batch_size=batch_size, workers=workers)
    if not cfg.weights:
        raise XmicError("give --weights FILE or local-dir:DIR (or `random` for a test run)")
    s = run_shards(cache_dir, cfg, _shard_range(shards), echo=click.echo)
    for w in s["warnings"]:
        click.echo(f"WARNING: {w}")
    click.echo(f"{s['shards_done']} shard(s) extracted, {s['shards_skipped']} already done, "
               f"{s['shards_failed']} failed, {s['frames']} frames, {s['segments_failed']} "
               "segment(s) failed")
    for f in s["failures"][:20]:
        click.echo(f"  failed: {f}")
    if s["segments_failed"] or s["shards_failed"]:
        sys.exit(1)


@extract.command("text")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--vocab", type=click.Choice(["noun", "verb", "all"]), default="all")
@click.option("--model")
@click.option("--weights")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--config", "config_path", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def extract_text_cmd(cache_dir, vocab, model, weights, device, config_path, sets):
    """Encode the class names (bare and zero-shot prompts) as cache vocabularies."""
    from xmic.extract.pipeline import extract_text
    cfg = _extract_config(config_path, sets, model=model, weights=weights, device=device)
    if not cfg.weights:
        raise XmicError("give --weights FILE or local-dir:DIR (or `random` for a test run)")
    done = extract_text(cache_dir, cfg, ("noun", "verb") if vocab == "all" else (vocab,))
    click.echo("vocabularies: " + ", ".join(f"{k} ({n} classes)" for k, n in done.items()))


@extract.command("convert-weights")
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.argument("dst", type=click.Path(path_type=Path))
def extract_convert(src, dst):
    """OpenAI TorchScript archive (e.g. ViT-B-16.pt) -> safetensors state dict for open_clip."""
    from xmic.extract.encoders import convert_openai_weights
    s = convert_openai_weights(src, dst)
    click.echo(f"wrote {dst}: {s['tensors']} tensors, {s['parameters']:,} parameters "
               "(use with --model ViT-B-16-quickgelu)")


@main.group(cls=XmicGroup)
def slurm():
    """Run extraction as job arrays: submit, status, retry (slurm | local | debug executors)."""


_RESOURCES = (("executor", click.Choice(["slurm", "local", "debug"])), ("partition", str),
              ("account", str), ("qos", str), ("constraint", str), ("gpus_per_task", int),
              ("cpus_per_task", int), ("mem_gb", int), ("timeout_min", int),
              ("array_parallelism", int), ("shards_per_task", int), ("max_array_size", int),
              ("log_dir", str))
_EXTRACTION = (("model", str), ("weights", str), ("device", click.Choice(["auto", "cpu", "cuda"])),
               ("precision", click.Choice(["fp32", "fp16", "bf16"])), ("batch_size", int),
               ("workers", int))


def _submission_options(f):
    for name, tp in reversed(_RESOURCES + _EXTRACTION):
        f = click.option("--" + name.replace("_", "-"), name, type=tp, default=None)(f)
    f = click.option("--config", "config_path", type=click.Path(path_type=Path),
                     help="Extraction config YAML.")(f)
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Extraction config override.")(f)
    f = click.option("--slurm-config", type=click.Path(path_type=Path), help="Slurm config YAML.")(f)
    f = click.option("--slurm-set", multiple=True, metavar="KEY=VALUE")(f)
    f = click.option("--wait", is_flag=True, help="Wait for the jobs, then report.")(f)
    f = click.option("--dry-run", is_flag=True, help="Print what would be submitted.")(f)
    return click.argument("cache_dir", type=click.Path(path_type=Path, exists=True))(f)


def _submit_and_report(cache_dir, ext, slu, retry, wait, dry_run):
    from xmic.slurm.status import format_status, status
    from xmic.slurm.submit import submit, wait as wait_jobs
    record, jobs = submit(cache_dir, ext, slu, retry=retry, dry_run=dry_run, echo=click.echo)
    if jobs:
        click.echo("job ids: " + " ".join(a["job_id"] for a in record["arrays"]) +
                   f"; logs in {record['log_dir']}; progress: xmic slurm status {cache_dir}")
    if (wait or slu.executor == "debug") and jobs:  # debug jobs run in this process, on wait
        bad = wait_jobs(jobs)
        cache, _, summary, subs = status(cache_dir)
        click.echo(format_status(cache, summary, subs))
        for b in bad[:20]:
            click.echo(f"  job {b['job_id']}: {b['error']}")
        if bad or summary["failed"] or summary["pending"]:
            sys.exit(1)


@slurm.command("submit")
@_submission_options
def slurm_submit(cache_dir, slurm_config, slurm_set, config_path, sets, wait, dry_run, **opts):
    """Submit every shard that is not committed (or running) as job arrays."""
    from xmic.slurm.config import SlurmConfig
    ext = _extract_config(config_path, sets, **{k: opts[k] for k, _ in _EXTRACTION})
    given = [f"{k}={v}" for k, _ in _RESOURCES if (v := opts[k]) is not None]
    slu = load_config(SlurmConfig, slurm_config, [*slurm_set, *given])
    _submit_and_report(cache_dir, ext, slu, False, wait, dry_run)


@slurm.command("retry")
@_submission_options
def slurm_retry(cache_dir, slurm_config, slurm_set, config_path, sets, wait, dry_run, **opts):
    """Resubmit the shards that are missing or failed (the last submission's settings, plus
    any option given here). Committed shards with failed segments are moved aside and redone."""
    from xmic.config import config_to_dict
    from xmic.extract.config import ExtractConfig
    from xmic.slurm.config import SlurmConfig
    from xmic.slurm.submit import last_submission_configs
    ext, slu = last_submission_configs(cache_dir)
    ext = load_config(ExtractConfig, config_path, [*sets, *(f"{k}={v}" for k, _ in _EXTRACTION
                                                           if (v := opts[k]) is not None)],
                      base=config_to_dict(ext))
    slu = load_config(SlurmConfig, slurm_config, [*slurm_set, *(f"{k}={v}" for k, _ in _RESOURCES
                                                               if (v := opts[k]) is not None)],
                      base=config_to_dict(slu))
    _submit_and_report(cache_dir, ext, slu, True, wait, dry_run)


@slurm.command("status")
@click.argument("cache_dir", type=click.Path(path_type=Path, exists=True))
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="Refresh until nothing is running or pending.")
@click.option("--interval", type=float, default=10.0, show_default=True)
def slurm_status(cache_dir, as_json, watch, interval):
    """Done / running / failed / pending shards, frames/s, ETA and errors, from the cache."""
    import time

    from xmic.slurm.status import format_status, status
    while True:
        cache, report, summary, subs = status(cache_dir)
        if as_json:
            click.echo(json.dumps({"summary": summary, "shards": report}, indent=1, default=str))
        else:
            click.echo(format_status(cache, summary, subs))
        if not watch or not (summary["running"] or summary["pending"]):
            return
        time.sleep(interval)
        click.echo("")


@main.command("train")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", default=None, help="Training split (default: train).")
@click.option("--label", type=click.Choice(["noun", "verb"]), default=None)
@click.option("--method", type=click.Choice(["xmic", "zeroshot", "linear", "clip-adapter"]),
              default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--epochs", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--seeds", default=None, help="Several seeds, e.g. 1,2,3: runs go to OUT/seed-N/.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Train config YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last.pt.")
def train_cmd(cache_dir, split, label, method, out, epochs, seed, seeds, device, config_path,
              sets, resume):
    """Fit the X-MIC adapter or a baseline on cached features (SPEC §3-5).

    Writes OUT/config.yaml, checkpoint.pt (selected epoch), last.pt, metrics.jsonl and
    train_curve.png. Model selection uses held-out source videos unless
    --set select_on_target_test_data=CACHE:SPLIT asks for the released (test-set) behaviour.
    """
    from xmic.train.config import TrainConfig
    from xmic.train.loop import train
    given = {"split": split, "label": label, "method": method, "epochs": epochs, "seed": seed,
             "device": device}
    overrides = [*sets] + [f"{k}={v}" for k, v in given.items() if v is not None]
    seed_list = [int(s) for s in seeds.split(",")] if seeds else [None]
    for s in seed_list:
        extra = [f"seed={s}"] if s is not None else []
        cfg = load_config(TrainConfig, config_path, overrides + extra)
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


@main.group(cls=DefaultCommandGroup)
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
def evaluate_cmd(run_dir, cache_dir, split, class_splits, out, device, as_json):
    """Score RUN on a cache split with that cache's own vocabulary for the run's label."""
    from xmic.evaluate.run import evaluate_run
    m = evaluate_run(run_dir, cache_dir, split, class_splits, out, device)
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
    metrics = collect(paths)
    if not metrics:
        raise XmicError(f"no metrics.json found under {[str(p) for p in paths]}; run "
                        "`xmic evaluate RUN --cache ... --split ...` first")
    text = format_table(*build_table(metrics, criterion), fmt)
    if out:
        Path(out).write_text(text)
    click.echo(text, nl=False)


def _cache_config(config_path, sets):
    from xmic.cache.config import CacheConfig
    return load_config(CacheConfig, config_path, sets)


@cache.command("info")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def cache_info(cache_dir, as_json):
    """Datasets, splits, views, shard states, bytes, vocabularies and fingerprints."""
    from xmic.cache import Cache
    from xmic.cache.info import format_info, info
    d = info(Cache.open(cache_dir))
    click.echo(json.dumps(d, indent=1) if as_json else format_info(d))


@cache.command("verify")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--deep", is_flag=True, help="Also recompute every data checksum.")
@click.option("--partial", is_flag=True, help="Accept shards not committed yet.")
def cache_verify(cache_dir, deep, partial):
    """Check markers, rows, index, fingerprints, values (and checksums). Exit 1 on problems."""
    from xmic.cache import Cache
    from xmic.cache.verify import verify
    problems = verify(Cache.open(cache_dir), deep=deep, partial=partial)
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {cache_dir}", err=True)
        sys.exit(1)
    click.echo(f"ok: {cache_dir} verified{' (deep)' if deep else ''}")


@cache.command("convert")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "backend", type=click.Choice(["zarr", "hdf5"]), required=True)
def cache_convert(cache_dir, out, backend):
    """Write the same cache with another backend into OUT (resumable)."""
    from tqdm import tqdm

    from xmic.cache import Cache
    from xmic.cache.convert import convert
    from xmic.cache.verify import verify
    src = Cache.open(cache_dir)
    total = sum(len(src.committed(v)) for v in src.views())
    with tqdm(total=total, desc="convert", unit="shard", disable=None) as bar:
        dst = convert(src, out, backend, progress=lambda v, s: bar.update())
    problems = verify(dst, partial=True)
    if problems:
        raise XmicError(f"converted cache {out} fails verify: {problems[0]}")
    click.echo(f"converted {cache_dir} -> {out} ({backend}); verify ok")


_model_options = [
    click.option("--model-name", default="ViT-B-16-quickgelu", show_default=True,
                 help="open_clip model that made the features (fingerprint)."),
    click.option("--weights-sha256", default="openai", show_default=True,
                 help="sha256 of the weights file that made the features (fingerprint)."),
    click.option("--quick-gelu/--no-quick-gelu", default=True, show_default=True),
]


def _with_model_options(f):
    for opt in reversed(_model_options):
        f = opt(f)
    return f


@cache.command("import")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["xmic-pickle"]), default="xmic-pickle",
              show_default=True)
@click.option("--dataset", type=click.Choice(["epic", "ego4d"]), required=True)
@click.option("--split", required=True, help="Split name in the cache (train, validation, val...).")
@click.option("--annotations", type=click.Path(path_type=Path), required=True,
              help="EPIC_100_*.csv or fho_lta_*.json")
@click.option("--view", "views", multiple=True, required=True, metavar="NAME=PICKLE")
@click.option("--taxonomy", type=click.Path(path_type=Path), help="Ego4D taxonomy JSON.")
@click.option("--noun-classes", type=click.Path(path_type=Path))
@click.option("--verb-classes", type=click.Path(path_type=Path))
@click.option("--video-info", type=click.Path(path_type=Path), help="EPIC_100_video_info.csv")
@click.option("--backend", type=click.Choice(["zarr", "hdf5"]), help="Backend of a new cache.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Cache config YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Cache config override.")
@_with_model_options
def cache_import(cache_dir, fmt, dataset, split, annotations, views, taxonomy, noun_classes,
                 verb_classes, video_info, backend, config_path, sets, model_name,
                 weights_sha256, quick_gelu):
    """Import features made by the released X-MIC code (one pickle per split and view)."""
    from xmic.cache.xmic_import import import_pickles, imported_model
    if backend:
        sets = (*sets, f"backend={backend}")
    config = _cache_config(config_path, sets) if (sets or config_path) else None
    pickles = {}
    for spec in views:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise XmicError(f"--view {spec!r}: expected NAME=PICKLE, e.g. hand_crop=train_hands.pkl")
        pickles[name] = Path(path)
    summary = import_pickles(cache_dir, dataset, split, annotations, pickles, config,
                             imported_model(model_name, weights_sha256, quick_gelu),
                             taxonomy=taxonomy, noun_classes=noun_classes,
                             verb_classes=verb_classes, video_info=video_info)
    click.echo(f"imported split {split}: {summary['segments']} segments")
    for view, s in summary["views"].items():
        click.echo(f"  {view}: D={s['dim']}, {s['shards_committed']} shards written, "
                   f"{s['shards_already_done']} already done, {s['missing_segments']} segments "
                   f"missing from the pickle (recorded as failed), {s['unused_pickle_keys']} pickle "
                   "keys not in the annotations (ignored)")


@cache.command("import-text")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Vocabulary name (noun, verb, ...).")
@click.option("--classes", type=click.Path(path_type=Path), required=True,
              help="One name per line, an EPIC class CSV, or a taxonomy JSON (with --field).")
@click.option("--field", type=click.Choice(["nouns", "verbs"]), help="Taxonomy JSON field.")
@click.option("--embeddings", type=click.Path(path_type=Path), required=True,
              help="[C, D] array: .npy or a torch file (weights_only).")
@click.option("--key", help="Key of the tensor when the torch file holds a dict.")
@click.option("--prompt", default="{}", show_default=True, help="Prompt the embeddings used.")
@click.option("--replace", is_flag=True, help="Overwrite an existing vocabulary of that name.")
@_with_model_options
def cache_import_text(cache_dir, name, classes, field, embeddings, key, prompt, replace,
                      model_name, weights_sha256, quick_gelu):
    """Add a vocabulary: class names and their text embeddings [C, D]."""
    from xmic.cache import Cache
    from xmic.cache.datasets import read_class_list
    from xmic.cache.xmic_import import imported_model, imported_vocab_fingerprint
    from xmic.cache.vocab import add_vocab, read_embeddings_file
    names = read_class_list(classes, field)
    emb = read_embeddings_file(embeddings, key)
    model = imported_model(model_name, weights_sha256, quick_gelu)
    v = add_vocab(Cache.open(cache_dir), name, names, emb, prompt,
                  imported_vocab_fingerprint(model, prompt), replace=replace,
                  source={"classes": str(classes), "embeddings": str(embeddings)})
    click.echo(f"vocabulary {name}: {len(v.classes)} classes, D={v.dim}")


def _demo_extractor(executor, slurm_set, device):
    """The demo's shard extraction as job arrays: (cache, config) -> summary."""
    from xmic.slurm.config import SlurmConfig
    from xmic.slurm.submit import extract_and_wait
    slu = load_config(SlurmConfig, None, [f"executor={executor}", "cpus_per_task=1", "mem_gb=4",
                                          "timeout_min=20", "array_parallelism=2",
                                          f"gpus_per_task={int(device == 'cuda')}", *slurm_set])

    def extract_shards(cache, cfg):
        click.echo(f"      extracting {cache.name} as {slu.executor} jobs ...")
        return extract_and_wait(cache, cfg, slu, echo=click.echo)
    return extract_shards


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--model", default=None, help="open_clip model (default: a tiny config, or "
              "ViT-B-16-quickgelu with --weights).")
@click.option("--weights", default="random", show_default=True,
              help="Weights file or local-dir:DIR; random gives meaningless features.")
@click.option("--epochs", default=15, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
              help="Extract shards as job arrays (default: in this process).")
@click.option("--slurm-set", multiple=True, metavar="KEY=VALUE",
              help="Slurm config for --executor slurm, e.g. partition=debug.")
def demo(out, model, weights, epochs, device, executor, slurm_set):
    """Generate a small egocentric world and run the real pipeline on it, end to end."""
    import shutil
    import time

    from xmic.evaluate.report import write_report
    from xmic.evaluate.run import evaluate_run
    from xmic.evaluate.table import build_table, collect, format_table
    from xmic.extract.world import extract_world
    from xmic.train.config import TrainConfig
    from xmic.train.loop import train
    t0 = time.time()
    tiny = Path(__file__).parent / "extract" / "configs" / "xmic-tiny-quickgelu.json"
    model = model or (str(tiny) if weights == "random" else "ViT-B-16-quickgelu")
    if weights == "random":
        click.echo("NOTE: the model weights are RANDOM (no --weights): every number below only "
                   "shows that the pipeline runs. For real features: xmic extract convert-weights "
                   "ViT-B-16.pt w.safetensors, then xmic demo --weights w.safetensors (see README).")
    extract_shards = _demo_extractor(executor, slurm_set, device) if executor else None
    epic, ego = extract_world(out, model, weights, device, echo=click.echo,
                              extract_shards=extract_shards)
    runs = out / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    for method in ("xmic", "zeroshot"):
        tc = load_config(TrainConfig, None, [f"method={method}", "label=noun", f"epochs={epochs}",
                                             "batch_size=8", f"device={device}",
                                             "heldout_fraction=0.2", "optim.warmup_epochs=2"])
        train(epic, tc, runs / method, echo=lambda *a: None)
    click.echo(f"[5/6] trained X-MIC ({epochs} epochs, held-out selection) and zero-shot on EPIC train")
    for method in ("xmic", "zeroshot"):
        evaluate_run(runs / method, epic, "validation", device=device)
        evaluate_run(runs / method, ego, "val", device=device)
    table = format_table(*build_table(collect([runs]), "exact"), "md")
    click.echo("[6/6] evaluated in-dataset (EPIC validation) and cross-dataset (Ego4D val):\n" + table)
    write_report(out / "report.md", table, weights, model, out / "world")
    click.echo(f"report: {out / 'report.md'}; plots: {runs}/*/eval/*/*.png; done in "
               f"{time.time() - t0:.0f}s")


@main.command("predict")
@click.argument("clip", type=click.Path(path_type=Path))
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True)
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
@click.option("--json", "as_json", is_flag=True)
def predict(clip, run_dir, classes, vocab, boxes, start, end, fps, top_k, model, weights, device,
            as_json):
    """Top-k classes of a clip (video or frame folder) for any vocabulary, with a trained run."""
    import numpy as np

    from xmic.cache import Cache
    from xmic.cache.vocab import load_vocab
    from xmic.extract.clip_embed import class_text, crop_thresholds, embed_clip, encoder_for_run
    from xmic.train.inference import load_run, score_clip
    net, cfg, ck = load_run(run_dir)
    fp = ck["fingerprints"]["views"][cfg.model.classified_view]
    enc = encoder_for_run(ck, cfg.model.classified_view, model, weights, device)
    unknown = [v for v in cfg.views() if v not in ("full_frame", "hand_crop")]
    if unknown:
        raise XmicError(f"the run reads views {unknown} made by another encoder; predict embeds "
                        "full_frame and hand_crop only")
    if bool(classes) == bool(vocab):
        raise XmicError('give exactly one of --classes "a,b,c" or --vocab CACHE:NAME')
    if classes:
        names = [c.strip() for c in classes.split(",") if c.strip()]
        if not names:
            raise XmicError("--classes holds no class name")
        w = class_text(enc, names, ck["fingerprints"]["vocab"].get("prompt", "{}"))
    else:
        cache_dir, _, name = vocab.rpartition(":")
        v = load_vocab(Cache.open(cache_dir), name)
        names, w = v.classes, v.embeddings
    s = fp.get("sampling", {})
    crop = (ck["fingerprints"]["views"].get("hand_crop") or {}).get("crop") or {}
    feats, frames, notes = embed_clip(  # the run's cache's sampling and crop thresholds
        clip, enc, cfg.views(), start, end, fps, boxes, s.get("policy", "per_bin"),
        s.get("per_bin", 4), s.get("bins", 16), **crop_thresholds(crop))
    try:
        scores = score_clip(net, cfg, feats, w)
    except ValueError as e:
        raise XmicError(str(e)) from None
    order = np.argsort(-scores, kind="stable")[:top_k]
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    top = [{"class": names[i], "score": float(scores[i]), "prob": float(probs[i])} for i in order]
    if as_json:
        click.echo(json.dumps({"clip": str(clip), "run": str(run_dir), "frames": len(frames),
                               "top": top, "notes": notes + enc.warnings}, indent=1))
        return
    for n in notes + enc.warnings:
        click.echo(f"note: {n}")
    click.echo(f"{clip}: {len(frames)} frames, {cfg.method} run {run_dir}")
    for i, t in enumerate(top, 1):
        click.echo(f"  {i}. {t['class']:<30} score {t['score']:8.3f}  p {t['prob']:.3f}")


if __name__ == "__main__":
    main()

"""``xmic cache``: info, verify, show, convert, import, import-text (and publish, fetch,
export from ``share_commands``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from xmic.cli import share_commands
from xmic.cli.base import (RecordChoice, SideFilesCommand, UsageError, XmicGroup, backend_names,
                           cache_config, dataset_kinds)

@click.group(cls=XmicGroup)
def cache():
    """Inspect, check, import and convert feature caches."""


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


@cache.command("show")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("segment_ids", nargs=-1)
@click.option("--fallbacks", type=int, default=0,
              help="Show the N segments whose hand crops fell back to the full frame most.")
@click.option("--view", help="The hand-crop view (default: hand_crop, or the one crop view).")
@click.option("--frames", "shown", type=int, default=16, show_default=True,
              help="Stored frames shown per segment, evenly spaced.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("contact-sheets"),
              show_default=True, help="Folder for the PNGs (SEGMENT.png), outside the cache.")
def cache_show(cache_dir, segment_ids, fallbacks, view, shown, out):
    """Contact sheets of segments: their stored frames with the hand box drawn, the crop beside
    each, frame numbers, the box source, and which crops fell back to the full frame."""
    import re
    from xmic.extract.contact_sheet import contact_sheet, fallback_segments
    from xmic.cache import Cache
    if Cache.open(cache_dir).holds(out):
        raise UsageError(f"--out {out} lies inside the cache; give a folder outside it")
    ids = list(segment_ids) + fallback_segments(cache_dir, view, fallbacks) * (fallbacks > 0)
    if not ids:
        raise UsageError("name a SEGMENT_ID, or give --fallbacks N to pick segments whose crops "
                         "fell back" + (" (none did)" if fallbacks else ""))
    if shown < 1:
        raise UsageError("--frames must be at least 1")
    from xmic.files.atomic import write_bytes_atomic
    out.mkdir(parents=True, exist_ok=True)  # the folder named may be a link: the user's choice
    for sid in dict.fromkeys(ids):
        png, s = contact_sheet(cache_dir, sid, view, shown)
        path = out / (re.sub(r"[^A-Za-z0-9._-]", "_", sid).lstrip(".") + ".png")
        write_bytes_atomic(path, png, out)  # no link planted inside it is followed
        rec = s["fallbacks_recorded"]
        click.echo(f"{path}: {sid}, {len(s['frames_shown'])} of {s['frames_stored']} frames, "
                   f"{len(s['fell_back_shown'])} shown fell back"
                   + (f" ({len(rec)} of {s['frames_stored']} recorded)" if rec is not None else "")
                   + f"; boxes {s['box_format']} {s['boxes']}")


@cache.command("convert")
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--to", "backend", type=RecordChoice(backend_names), required=True)
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
        raise UsageError(f"converted cache {out} fails verify: {problems[0]}")
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


@cache.command("import", cls=SideFilesCommand)
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["xmic-pickle"]), default="xmic-pickle",
              show_default=True)
@click.option("--dataset", type=RecordChoice(lambda: dataset_kinds(importable_only=True)),
              required=True)
@click.option("--split", required=True, help="Split name in the cache (train, validation, val...).")
@click.option("--annotations", type=click.Path(path_type=Path), required=True,
              help="EPIC_100_*.csv or fho_lta_*.json")
@click.option("--view", "views", multiple=True, required=True, metavar="NAME=PICKLE")
@click.option("--backend", type=RecordChoice(backend_names),
              help="Backend of a new cache (default: zarr).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Cache config YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Cache config override.")
@_with_model_options
def cache_import(cache_dir, fmt, dataset, split, annotations, views, backend, config_path, sets,
                 model_name, weights_sha256, quick_gelu, side_files):
    """Import features made by the released X-MIC code (one pickle per split and view)."""
    from xmic.cache.xmic_import import import_pickles, imported_model
    if backend:
        sets = (*sets, f"backend={backend}")
    config = cache_config(config_path, sets) if (sets or config_path) else None
    pickles = {}
    for spec in views:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--view {spec!r}: expected NAME=PICKLE, e.g. hand_crop=train_hands.pkl")
        pickles[name] = Path(path)
    summary = import_pickles(cache_dir, dataset, split, annotations, pickles, config,
                             imported_model(model_name, weights_sha256, quick_gelu),
                             **side_files)
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
    cache = Cache.open(cache_dir)
    emb = read_embeddings_file(embeddings, key, len(names),
                               {rec["dim"] for rec in cache.views().values()})
    model = imported_model(model_name, weights_sha256, quick_gelu)
    v = add_vocab(cache, name, names, emb, prompt,
                  imported_vocab_fingerprint(model, prompt), replace=replace,
                  source={"classes": str(classes), "embeddings": str(embeddings)})
    click.echo(f"vocabulary {name}: {len(v.classes)} classes, D={v.dim}")


for _command in (share_commands.cache_publish, share_commands.cache_fetch,
                 share_commands.cache_export):
    cache.add_command(_command)

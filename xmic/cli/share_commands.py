"""``xmic cache publish | fetch | export``: share a cache, take one by name, hand one to other
frameworks. Added to the ``cache`` group (``cache_commands``)."""
from __future__ import annotations

from pathlib import Path

import click

from xmic.cli.base import XmicCommand


def _bytes_bar(desc: str, total: int | None = None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=None)


@click.command("publish", cls=XmicCommand)
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--allow-incomplete", is_flag=True,
              help="Publish the committed shards of a cache with shards pending, failed, or "
                   "holding failed segments (the card's counts say what is missing).")
@click.option("--license", "license_id",
              help="The card's license id (default: the dataset's, e.g. cc-by-nc-4.0 for EPIC).")
def cache_publish(cache_dir, out, allow_incomplete, license_id):
    """Write CACHE as a folder to upload as a Hugging Face dataset repository or copy anywhere:
    the shards as they are, the index, vocabularies, a dataset card (README.md) and a checksum
    manifest."""
    from xmic.cache import Cache
    from xmic.cache.publish import publish
    cache = Cache.open(cache_dir)
    with _bytes_bar("publish") as bar:
        s = publish(cache, out, allow_incomplete, license_id, progress=bar.update)
    f = s["fields"]
    click.echo(f"published {cache_dir} -> {out}: {s['files']} files, {s['bytes'] / 2**20:.1f} "
               f"MiB; views {', '.join(f['views'])}; splits "
               + ", ".join(f"{k} {v['segments']} segments" for k, v in f["splits"].items()))
    click.echo(f"upload it with: huggingface-cli upload ORG/NAME {out} --repo-type dataset; "
               "then use it as --cache hf-hub:ORG/NAME")


@click.command("fetch", cls=XmicCommand)
@click.argument("source")
@click.argument("dest", type=click.Path(path_type=Path))
def cache_fetch(source, dest):
    """Fetch a published cache into DEST, checking every file's sha256, the card and the
    fingerprints first. SOURCE: a folder, file:///PATH, or hf-hub:ORG/REPO[@REVISION] (through
    huggingface_hub's cache: HF_HUB_OFFLINE and HF_HUB_CACHE apply, downloads resume)."""
    from xmic.cache.info import format_info, info
    from xmic.cache.sources import fetch
    with _bytes_bar("fetch") as bar:
        cache = fetch(source, dest, progress=bar.update)
    click.echo(f"fetched {source} -> {dest}: every file matches its manifest, the card matches "
               "the files, verify --deep ok")
    click.echo(format_info(info(cache)))


@click.command("export", cls=XmicCommand)
@click.argument("cache_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["parquet", "npy"]), required=True,
              help="parquet: one row per segment, an embedding column per view (datasets, "
                   "pandas); npy: SEGMENT_VIEW.npy per segment and view, as video_features does.")
@click.option("--split", "splits", multiple=True, help="Only this split (repeatable).")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
def cache_export(cache_dir, out, fmt, splits, views):
    """Export embeddings for other frameworks, shard by shard (an interrupted export resumes)."""
    from tqdm import tqdm

    from xmic.cache import Cache
    from xmic.cache.export import export
    cache = Cache.open(cache_dir)
    chosen = list(splits) or cache.splits()
    total = sum(len(cache.shards(s)) for s in chosen if s in cache.splits())
    with tqdm(total=total, desc=f"export {fmt}", unit="shard", disable=None) as bar:
        s = export(cache, out, fmt, list(splits) or None, list(views) or None,
                   progress=lambda shard: bar.update())
    click.echo(f"exported {', '.join(s['views'])} of {', '.join(s['splits'])} to {out} ({fmt}): "
               f"{s['shards']} shard(s) written, {s['skipped']} already there"
               + (f"; {s['partial']} not committed in every view yet (their rows say pending; "
                  "export again into the same folder once extraction finished)"
                  if s["partial"] else ""))

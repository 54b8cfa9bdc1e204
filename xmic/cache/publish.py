"""``publish`` and ``fetch``: a cache as a folder to share, and back, checked file by file.

Inputs: ``publish``: a ``Cache`` and a new output folder. ``fetch``: a published folder (local, or
a Hugging Face snapshot that ``xmic.cache.sources`` brought) and a new destination.
Outputs: the published folder holds the committed shards as they are (no re-encoding), the plan,
the index, the view records, the vocabularies, ``cache.json``/``config.yaml``, the card
(``README.md``, ``xmic.cache.card``) and ``manifest.json`` (bytes and sha256 of every other file);
nothing of extraction's local bookkeeping (attempt logs, claims, tar indexes, the plan's local
paths). ``fetch`` copies every file the manifest lists, hashing as it copies, refuses any
difference naming the file, any manifest path that leaves the folder, and a card whose fields
differ from those computed from the files, then checks the cache (``verify --deep``) before the
destination appears (one rename). Both refuse to write through links.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow.compute as pc

from xmic.cache.card import (CARD, EXTRACTION, card_differences, card_fields, card_text,
                             extraction_record, read_card)
from xmic.cache.cache_folder import Cache
from xmic.cache.paths import (CACHE_JSON, CONFIG_YAML, EMBEDDINGS, INDEX, MARKER, ROWS, SEGMENTS,
                              VIEW_JSON, VOCAB_JSON, CacheError, inside, read_cache_json)
from xmic.cache.verify import verify
from xmic.cache.vocab import vocab_names
from xmic.files.atomic import (UnsafePathError, commit_dir, guard, make_dirs, remove_tree,
                               tmp_name, write_new)
from xmic.files.copying import copy_hashed, relative_parts
from xmic.files.long_lists import some

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "xmic-published-cache"
MANIFEST_LIMIT = 64 << 20


def published_files(cache: Cache) -> list[str]:
    """Relative paths of what a published cache holds (card and manifest aside)."""
    cache.index()  # consolidated now, so the published index matches the published shards
    out = [CACHE_JSON, CONFIG_YAML, SEGMENTS, INDEX]
    for view in sorted(cache.views()):
        out.append(f"views/{view}/{VIEW_JSON}")
        for shard in sorted(cache.committed(view)):
            m = cache.marker(view, shard)
            out += [f"views/{view}/{shard}/{f}" for f in (*sorted(m["files"]), ROWS, MARKER)]
    for name in vocab_names(cache):
        out += [f"vocab/{name}/{VOCAB_JSON}", f"vocab/{name}/{EMBEDDINGS}"]
    return [p for p in out if p != CONFIG_YAML or (cache.root / p).exists()]


def incomplete(cache: Cache) -> list[str]:
    """Shards not committed in every view, and committed shards holding failed segments."""
    out = [f"{view}/{shard} ({state})" for view in sorted(cache.views())
           for shard, state in sorted(cache.shard_states(view).items()) if state != "done"]
    idx = cache.index()
    failed = idx.filter(pc.equal(idx["status"], "failed"))
    out += [f"{shard} (holds failed segments)" for shard in
            dict.fromkeys(failed["shard"].to_pylist())]
    return out


def _new_folder(out: Path, what: str) -> None:
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise CacheError(f"{out}: exists and is not an empty folder; {what} into a new folder")


def publish(cache: Cache, out: str | Path, allow_incomplete: bool = False,
            license_id: str | None = None, progress=None) -> dict:
    """Write ``cache`` as a folder ready to upload; returns the card's fields and the file count."""
    out = Path(out).absolute()
    _new_folder(out, "publish")
    if cache.holds(out) or out in cache.root.parents:
        raise CacheError(f"cannot publish {cache.root} into {out}: one lies inside the other")
    left = incomplete(cache)
    if left and not allow_incomplete:
        raise CacheError(f"{cache.root}: {len(left)} shard(s) are not complete: "
                         f"{some(left, what='incomplete shards')}; finish them (`xmic extract "
                         "run`, `xmic slurm retry`), or publish what is committed with "
                         "--allow-incomplete (the card's counts then say what is missing)")
    problems = verify(cache, deep=True)
    if problems:
        raise CacheError(f"{cache.root}: verify --deep found {len(problems)} problem(s): "
                         f"{some(problems, 3, sep='; ', what='verify problems')}; publish a "
                         "cache that verifies")
    files = published_files(cache)
    fields = card_fields(cache)
    made_empty = out.is_dir()
    tmp = out.parent / tmp_name(out.name)
    make_dirs(tmp, out.parent)
    try:
        manifest = {}
        for rel in files:
            make_dirs((tmp / rel).parent, tmp)  # read below without a link on the way:
            size, sha = copy_hashed(inside(cache.root, *rel.split("/")), tmp / rel, tmp)
            manifest[rel] = {"bytes": size, "sha256": sha}
            if progress:
                progress(size)
        record = extraction_record(cache)
        if record:
            data = json.dumps({"splits": record}, indent=1, sort_keys=True).encode()
            write_new(tmp / EXTRACTION, data, tmp)
            manifest[EXTRACTION] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        card = card_text(cache, fields, license_id).encode()
        write_new(tmp / CARD, card, tmp)
        manifest[CARD] = {"bytes": len(card), "sha256": hashlib.sha256(card).hexdigest()}
        body = {"format": MANIFEST_FORMAT, "version": 1, "files": manifest}
        write_new(tmp / MANIFEST, json.dumps(body, indent=1, sort_keys=True).encode(), tmp)
        _commit(tmp, out, made_empty, "publish")
    except BaseException:
        remove_tree(tmp, out.parent)
        raise
    return {"fields": fields, "files": len(manifest) + 1,
            "bytes": sum(e["bytes"] for e in manifest.values())}


def _commit(tmp: Path, final: Path, made_empty: bool, what: str) -> None:
    """Rename the finished folder into place (an empty folder the user made for it is replaced);
    another process that got there first with the same content wins, and this copy goes."""
    if made_empty:
        try:
            os.rmdir(final)
        except OSError:
            pass  # filled meanwhile: the commit below finds out by whom
    if not commit_dir(tmp, final, final.parent) and not (final / MANIFEST).is_file():
        raise CacheError(f"{final}: filled by something else while {what} ran; {what} into a "
                         "new folder")


def _source(folder: Path, rel: str, where: str, follow_links: bool) -> Path:
    """A published file's path in ``folder``, reached without a symbolic link on the way; in a
    hub snapshot the file itself may be one (its link into the blob store), nothing above it."""
    try:
        path = folder.joinpath(*relative_parts(rel))
        guard(path.parent if follow_links else path, folder)
    except UnsafePathError as e:
        raise CacheError(f"{where}: {MANIFEST} names {rel!r}, which is not a plain file of the "
                         f"published folder ({e}); refusing the whole cache") from None
    return path


def read_manifest(folder: Path, where: str, follow_links: bool = False) -> dict:
    """rel path -> {"bytes", "sha256"}, every path plain and relative."""
    path = _source(folder, MANIFEST, where, follow_links)
    if not path.is_file() or path.stat().st_size > MANIFEST_LIMIT:
        raise CacheError(f"{where}: no {MANIFEST} (not a published xmic cache, or a damaged "
                         "download); publish it with `xmic cache publish`")
    body = read_cache_json(path, "manifest")
    files = body.get("files") if body.get("format") == MANIFEST_FORMAT else None
    if not isinstance(files, dict) or CARD not in files or CACHE_JSON not in files:
        raise CacheError(f"{where}: {MANIFEST} is not an xmic manifest listing the card and "
                         f"{CACHE_JSON}")
    for rel, e in files.items():
        _source(folder, rel, where, follow_links)
        if (not isinstance(e, dict) or not isinstance(e.get("bytes"), int)
                or not isinstance(e.get("sha256"), str)):
            raise CacheError(f"{where}: {MANIFEST}: entry {rel!r} lacks bytes and sha256")
    return files


def fetch_folder(folder: Path, dest: str | Path, where: str, follow_links: bool = False,
                 progress=None) -> Cache:
    """Copy a published cache from ``folder`` into the new folder ``dest``, every file checked
    (see the module docstring). ``follow_links``: the folder is a hub snapshot of blob links."""
    dest = Path(dest).absolute()
    _new_folder(dest, "fetch")
    files = read_manifest(folder, where, follow_links)
    made_empty = dest.is_dir()
    tmp = dest.parent / tmp_name(dest.name)
    make_dirs(tmp, dest.parent)
    try:
        for rel, e in files.items():
            src = _source(folder, rel, where, follow_links)
            if not src.is_file():
                raise CacheError(f"{where}: {rel} is listed in {MANIFEST} but missing; fetch "
                                 "again (an interrupted download resumes)")
            make_dirs((tmp / rel).parent, tmp)
            size, sha = copy_hashed(src, tmp / rel, tmp, follow_source_link=follow_links)
            if (size, sha) != (e["bytes"], e["sha256"]):
                raise CacheError(f"{where}: {rel} does not match {MANIFEST} ({size} bytes, "
                                 f"sha256 {sha[:16]}…; expected {e['bytes']} bytes, "
                                 f"{e['sha256'][:16]}…): damaged or changed; fetch it again "
                                 "from its publisher")
            if progress:
                progress(size)
        cache = Cache.open(tmp)
        wrong = card_differences(read_card(tmp / CARD), card_fields(cache))
        if wrong:
            raise CacheError(f"{where}: {CARD} does not describe its files: "
                             f"{some(wrong, 3, sep='; ', what='card differences')}")
        problems = verify(cache, deep=True)
        if problems:
            raise CacheError(f"{where}: the fetched cache does not verify: "
                             f"{some(problems, 3, sep='; ', what='verify problems')}")
        _commit(tmp, dest, made_empty, "fetch")
    except BaseException:
        remove_tree(tmp, dest.parent)
        raise
    return Cache.open(dest)

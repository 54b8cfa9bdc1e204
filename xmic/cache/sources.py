"""Where a cache comes from: a folder, a ``file://`` URL, or ``hf-hub:ORG/REPO[@REVISION]``.

Input: a cache source as users give it to ``--cache`` or ``xmic cache fetch``. Output: a local
cache folder. A folder is used as it is. A published cache (``file://`` URL or a hub repository) is
fetched into ``XMIC_HOME/fetched/NAME-CONTENT`` (``XMIC_HOME`` defaults to ``~/.cache/xmic``;
CONTENT: a hash of its manifest), checked file by file (``xmic.cache.publish.fetch_folder``),
and used from there while the source publishes the same content. Hub
repositories come through huggingface_hub's own ``snapshot_download`` (dataset repositories,
its cache and resumable downloads; ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` are honoured).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from xmic.cache.paths import CacheError
from xmic.files.hub_cache import hub_cache_dir, hub_offline

HUB = "hf-hub:"
HUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def is_remote(source: str) -> bool:
    return str(source).startswith((HUB, "file://"))


def fetched_home() -> Path:
    return Path(os.environ.get("XMIC_HOME") or Path.home() / ".cache" / "xmic") / "fetched"


def parse_hub(source: str) -> tuple[str, str | None]:
    """``hf-hub:ORG/REPO[@REVISION]`` -> (repo id, revision or None)."""
    repo, _, revision = source[len(HUB):].partition("@")
    if not HUB_REPO.fullmatch(repo) or ".." in repo or (revision and not re.fullmatch(
            r"[A-Za-z0-9._/-]+", revision)):
        raise CacheError(f"{source!r}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO@REVISION")
    return repo, revision or None


def local_folder(source: str) -> tuple[Path, bool]:
    """(the published folder to read, whether its files are hub blob links); refused when
    there is no such folder."""
    if source.startswith(HUB):
        repo, revision = parse_hub(source)
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
        except ImportError:
            raise CacheError(f"{source}: needs huggingface_hub (pip install huggingface_hub)") from None
        try:
            path = snapshot_download(repo, repo_type="dataset", revision=revision,
                                     cache_dir=hub_cache_dir(), local_files_only=hub_offline())
        except LocalEntryNotFoundError:
            raise CacheError(f"{source}: not in the Hugging Face cache "
                             f"({hub_cache_dir() or 'its default folder'}) and "
                             "the hub cannot be reached (HF_HUB_OFFLINE, or no network); "
                             "fetch it where the hub can be reached, or give a folder") from None
        except (HfHubHTTPError, ValueError, OSError) as e:
            raise CacheError(f"{source}: the hub refused the download ({e}); check the "
                             "repository name, revision and your token") from None
        return Path(path), True
    folder = Path(source)
    if source.startswith("file://"):
        url = urlparse(source)
        if url.netloc not in ("", "localhost"):
            raise CacheError(f"{source!r}: a file URL names a local path (file:///PATH)")
        folder = Path(unquote(url.path))
    if not folder.is_dir():
        raise CacheError(f"{source}: no such folder")
    return folder, False


def fetched_name(source: str, content: str) -> str:
    """The folder a remote source's published ``content`` (``content_id``) is kept under:
    readable, one per content, so a source that moved on is fetched again."""
    where = parse_hub(source)[0] if source.startswith(HUB) else source.split(":", 1)[1]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", where).strip("-.")[:80] or "cache"
    return f"{stem}-{content[:16]}"


def content_id(files: dict) -> str:
    """What a published cache holds, as one hash: its manifest's files, sizes and sha256."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def fetch(source: str, dest: str | Path, progress=None):
    """Fetch a published cache into the new folder ``dest``, checked; returns the ``Cache``."""
    from xmic.cache.publish import fetch_folder
    folder, links = local_folder(str(source))
    return fetch_folder(folder, dest, str(source), follow_links=links, progress=progress)


def resolve_cache(source: str | Path) -> Path:
    """A local cache folder for ``--cache``: a folder as it is, a remote source fetched (checked)
    into ``fetched_home()``, once per published content: the source is looked up each time (a
    hub repository without @REVISION at its newest revision; offline, the newest one in the
    Hugging Face cache), and fetched again only when its manifest differs from every copy kept."""
    from xmic.cache.publish import fetch_folder, read_manifest
    source = str(source)
    if not is_remote(source):
        return Path(source)
    folder, links = local_folder(source)
    dest = fetched_home() / fetched_name(source, content_id(read_manifest(folder, source, links)))
    if not dest.is_dir():
        from xmic.files.atomic import make_dirs
        make_dirs(dest.parent, dest.parent.parent)
        fetch_folder(folder, dest, source, follow_links=links)
    return dest

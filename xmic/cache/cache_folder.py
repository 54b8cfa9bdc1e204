"""``Cache``: one cache folder (one dataset), its plan, views, committed shards and index.

Inputs: a cache root path. Outputs: the plan (``segments.parquet``), each view's record
(``view.json``: width, dtype, fingerprint), the committed shards found from their markers, the
consolidated index (``index.parquet``, rebuilt when the set of markers changed), and the state of
any shard (done | failed | running | pending). Writing shards: ``xmic.cache.writer``; loading
views: ``xmic.cache.reader``; vocabularies: ``xmic.cache.vocab``.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from xmic.cache import fingerprint as fpmod
from xmic.cache.claims import live_claims
from xmic.cache.commit_log import commit_records
from xmic.cache.config import CacheConfig
from xmic.cache.index import PLAN_SCHEMA, consolidate, merge_plans, with_recordings
from xmic.files.atomic import (NOFOLLOW, create_json_exclusive, remove_file,
                                     remove_tree, write_bytes_atomic)
from xmic.cache.paths import (ARCHIVE_INDEX, CACHE_JSON, CONFIG_YAML, FAILED_SUFFIX, INDEX, MARKER, ROWS,
                              SEGMENTS, CacheError, check_cache_name, read_cache_json, shard_dir,
                              stale_tmp, view_dir, LOCK, VIEW_JSON)
from xmic.config import config_to_dict, dump_config, from_dict

FORMAT = "xmic-cache"
VERSION = 1
INDEX_SIGNATURE_KEY = b"xmic.markers"


def _write_parquet_atomic(path: Path, table: pa.Table, metadata: dict | None = None,
                          root: Path | None = None) -> None:
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes_atomic(path, memoryview(sink.getvalue()), root)


def read_parquet(path: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise CacheError(f"{path}: {what} is missing") from None
    except (OSError, pa.ArrowException) as e:
        raise CacheError(f"{path}: {what} is unreadable ({e})") from None


@contextmanager
def discard_if_new(root: str | Path):
    """Undo a cache that this block creates when the block fails: a refused plan or import
    leaves no half-made cache behind (an existing cache is left alone)."""
    root = Path(root)
    fresh = not (root / CACHE_JSON).exists() and (not root.exists() or
                                                  (root.is_dir() and half_made(root)))
    existed = root.exists()
    try:
        yield
    except BaseException:
        if fresh and root.is_dir() and not root.is_symlink():
            for p in list(root.iterdir()):
                remove_tree(p, root) if p.is_dir() and not p.is_symlink() else remove_file(p, root)
            if not existed:
                root.rmdir()
        raise


def half_made(root: Path) -> bool:
    """True when ``root`` holds nothing, or only what a ``create`` killed before its manifest
    leaves (the config file and the temporary files of both, the archive indexes of its plan):
    such a folder is finished, not
    refused, so a killed command can simply be run again."""
    own = (CONFIG_YAML, "." + CONFIG_YAML + ".", "." + CACHE_JSON + ".")
    return all((p.is_file() and not p.is_symlink() and
                (p.name == own[0] or p.name.startswith(own[1:])))
               or (p.name == ARCHIVE_INDEX and p.is_dir() and not p.is_symlink())
               for p in root.iterdir())


def state_of(committed: bool, running: bool, failed: bool, failed_segments: int = 0) -> str:
    """The one rule of a shard's state, used by ``cache info``, ``slurm status``, ``extract run``
    and ``slurm retry``. done: committed (only the rename that commits a shard makes its
    folder) with every segment encoded; running: a live writer claims it; failed: a failure
    record (``SHARD.failed.json``) and no commit, or committed with failed segments (a shard
    whose segments all failed is failed, never done); pending: none of these."""
    if running:
        return "running"
    if committed:
        return "failed" if failed_segments else "done"
    return "failed" if failed else "pending"


class Cache:
    def __init__(self, root: Path, meta: dict, config: CacheConfig):
        self.root = Path(root).resolve()
        self.meta = meta
        self.config = config
        self._plan: pa.Table | None = None

    def holds(self, path) -> bool:
        """Whether ``path`` is this cache's folder or lies inside it (outputs never go there)."""
        p = Path(path).resolve()
        return p == self.root or self.root in p.parents

    # ---- create / open -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, dataset: str, config: CacheConfig) -> "Cache":
        """Create an empty cache, or open an existing one with the same dataset and config."""
        root = Path(root)
        check_cache_name("dataset", dataset)
        if (root / CACHE_JSON).exists():
            cache = cls.open(root)
            if cache.meta["dataset"] != dataset:
                raise CacheError(f"{root} is a cache of dataset {cache.meta['dataset']!r}, not "
                                 f"{dataset!r}: one cache per dataset")
            if cache.config != config:
                raise CacheError(f"{root} was made with config {config_to_dict(cache.config)}; "
                                 f"it cannot change to {config_to_dict(config)} "
                                 "(use `xmic cache convert` for another backend)")
            return cache
        if root.exists() and not root.is_dir():
            raise CacheError(f"{root} is a file, not a folder; choose a new folder for the cache")
        if root.exists() and not half_made(root):
            raise CacheError(f"{root} exists, is not empty and is not a cache; choose a new folder")
        root.mkdir(parents=True, exist_ok=True)  # the folder the user names may be a link
        for leftover in stale_tmp(root, "." + CONFIG_YAML) + stale_tmp(root, "." + CACHE_JSON):
            remove_file(leftover, root)
        meta = {"format": FORMAT, "version": VERSION, "dataset": dataset,
                "backend": config.backend, "dtype": config.dtype, "config": config_to_dict(config),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_bytes_atomic(root / CONFIG_YAML, dump_config(config).encode(), root)
        if not create_json_exclusive(root / CACHE_JSON, meta, root):
            return cls.open(root)
        return cls(root, meta, config)

    @classmethod
    def open_or_create(cls, root: str | Path, dataset: str, config: CacheConfig | None) -> "Cache":
        """An existing cache keeps its config (``config`` None, or equal to it); a new one gets
        ``config`` or the defaults."""
        if (Path(root) / CACHE_JSON).exists() and config is None:
            cache = cls.open(root)
            if cache.dataset != dataset:
                raise CacheError(f"{root} is a cache of dataset {cache.dataset!r}, not {dataset!r}: "
                                 "one cache per dataset")
            return cache
        return cls.create(root, dataset, config or CacheConfig())

    @classmethod
    def open(cls, root: str | Path) -> "Cache":
        root = Path(root)
        if not (root / CACHE_JSON).exists():
            raise CacheError(f"{root}: not an xmic cache (no {CACHE_JSON}); create one with "
                             "`xmic cache import` or extraction")
        meta = read_cache_json(root / CACHE_JSON, "cache manifest")
        if meta.get("format") != FORMAT:
            raise CacheError(f"{root / CACHE_JSON}: not an xmic cache manifest")
        if meta.get("version") != VERSION:
            raise CacheError(f"{root}: cache format version {meta.get('version')} is not supported "
                             f"by this xmic (version {VERSION})")
        config = from_dict(CacheConfig, meta.get("config", {}), f"{root / CACHE_JSON}:config")
        try:  # the dataset name becomes part of output folders (eval/DATASET-SPLIT)
            check_cache_name("dataset", meta.get("dataset"))
        except CacheError as e:
            raise CacheError(f"{root / CACHE_JSON}: {e}; the manifest is corrupt or hostile")
        return cls(root, meta, config)

    @property
    def backend(self) -> str:
        return self.config.backend

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @contextmanager
    def lock(self):
        """Exclusive lock for plan and view-record changes (shards need none: one writer each)."""
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ---- plan ----------------------------------------------------------------------------
    def plan(self) -> pa.Table:
        if self._plan is None:
            path = self.root / SEGMENTS
            self._plan = (with_recordings(read_parquet(path, "segment plan")) if path.exists()
                          else PLAN_SCHEMA.empty_table())
        return self._plan

    def add_plan(self, plan: pa.Table, locked: bool = False) -> pa.Table:
        """Add one split's planned segments (see ``index.make_plan``); returns the whole plan.
        ``locked``: the caller holds ``lock()`` already (a plan written with other files)."""
        with (contextlib.nullcontext() if locked else self.lock()):
            self._plan = None
            merged = merge_plans(self.plan(), plan)
            if merged is not self.plan():
                _write_parquet_atomic(self.root / SEGMENTS, merged, root=self.root)
            self._plan = merged
        return merged

    def splits(self) -> list[str]:
        return sorted(set(self.plan()["split"].to_pylist()))

    def shards(self, split: str | None = None) -> list[str]:
        plan = self.plan()
        if split is not None:
            import pyarrow.compute as pc
            plan = plan.filter(pc.equal(plan["split"], split))
        return list(dict.fromkeys(plan["shard"].to_pylist()))

    def shard_segments(self, shard: str) -> pa.Table:
        import pyarrow.compute as pc
        plan = self.plan()
        return plan.filter(pc.equal(plan["shard"], shard))

    # ---- views ---------------------------------------------------------------------------
    def views(self) -> dict[str, dict]:
        out = {}
        vroot = self.root / "views"
        if vroot.is_dir():
            for p in sorted(vroot.iterdir()):
                if (p / VIEW_JSON).exists():
                    out[p.name] = read_cache_json(p / VIEW_JSON, f"record of view {p.name}")
        return out

    def view(self, name: str) -> dict:
        path = view_dir(self.root, name) / VIEW_JSON
        if not path.exists():
            have = sorted(self.views())
            raise CacheError(f"{self.root}: no view {name!r} (views here: {have})")
        return read_cache_json(path, f"record of view {name}")

    def register_view(self, name: str, dim: int, fingerprint: dict) -> dict:
        """Record a view's width and fingerprint on first use; later shards must match them."""
        fpmod.check_view_fingerprint(fingerprint, f"view {name}")
        if int(dim) < 1:
            raise CacheError(f"view {name!r}: width {dim} cannot hold embeddings; nothing written")
        rec = {"name": name, "dim": int(dim), "dtype": self.config.dtype,
               "fingerprint": fingerprint, "fingerprint_id": fpmod.fingerprint_id(fingerprint)}
        path = view_dir(self.root, name) / VIEW_JSON
        if path.exists() or not create_json_exclusive(path, rec, self.root):
            self.check_view(name, dim, fingerprint)  # every later shard: one read, no write
        return rec

    def check_view(self, name: str, dim: int, fingerprint: dict) -> None:
        have = self.view(name)
        if have["dim"] != dim:
            raise CacheError(f"view {name!r} of {self.root} holds width {have['dim']}, "
                             f"refusing data of width {dim}")
        if have["fingerprint"] != fingerprint:
            lines = "; ".join(fpmod.diff(have["fingerprint"], fingerprint))
            raise CacheError(f"view {name!r} of {self.root} has fingerprint "
                             f"{have['fingerprint_id']}, refusing a shard with fingerprint "
                             f"{fpmod.fingerprint_id(fingerprint)} ({lines}); write it to a new "
                             "view name or a new cache")

    # ---- shards --------------------------------------------------------------------------
    def _listing(self, view: str) -> tuple[dict[str, Path], set[str]]:
        """One listing of a view's folder: (committed shard -> folder, shards with a failure
        record). Committed: a shard folder holding its marker (the rename that commits a shard
        moves a folder whose marker was written last; a folder without one is damaged)."""
        vdir = view_dir(self.root, view)
        done, failed = {}, set()
        if vdir.is_dir():
            with os.scandir(vdir) as it:
                for e in it:
                    if e.name.endswith(FAILED_SUFFIX):
                        failed.add(e.name[:-len(FAILED_SUFFIX)])
                    elif (not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                          and os.path.exists(os.path.join(e.path, MARKER))):
                        done[e.name] = Path(e.path)
        return done, failed

    def committed(self, view: str) -> dict[str, Path]:
        """Shard name -> folder, for every committed shard of ``view``."""
        return self._listing(view)[0]

    def marker(self, view: str, shard: str) -> dict:
        return read_cache_json(shard_dir(self.root, view, shard) / MARKER, f"marker of shard {shard}")

    def shard_state(self, view: str, shard: str) -> str:
        """done | running | failed | pending of one shard (``state_of``)."""
        sdir = shard_dir(self.root, view, shard)
        committed = (sdir / MARKER).exists()
        bad = int(self.marker(view, shard).get("failed") or 0) if committed else 0
        return state_of(committed, bool(live_claims(self.root, view, shard)),
                        sdir.with_name(shard + FAILED_SUFFIX).exists(), bad)

    def shard_states(self, view: str, claims: dict | None = None) -> dict[str, str]:
        """Every planned shard's state for ``view`` (``states_and_commits``)."""
        return self.states_and_commits(view, claims)[0]

    def states_and_commits(self, view: str, claims: dict | None = None) -> tuple[dict, dict]:
        """(shard -> state, committed shard -> its commit record), from one listing of the
        view's folder and its commit log (a marker is opened only for a shard the log lacks).
        ``claims``: ``live_claims`` of the view when the caller has them already."""
        running = set(live_claims(self.root, view) if claims is None else claims)
        done, failed = self._listing(view)
        records = commit_records(view_dir(self.root, view), done)
        states = {s: state_of(s in done, s in running, s in failed,
                              int((records.get(s) or {}).get("failed") or 0))
                  for s in self.shards()}
        return states, records

    def shard_rows(self, view: str, shard: str) -> pa.Table:
        return read_parquet(shard_dir(self.root, view, shard) / ROWS, f"rows of shard {shard}")

    # ---- index ---------------------------------------------------------------------------
    def _signature(self) -> str:
        parts = []
        for view in sorted(self.views()):
            for shard, path in sorted(self.committed(view).items()):
                st = os.stat(path / MARKER)
                parts.append(f"{view}/{shard}:{st.st_mtime_ns}:{st.st_size}")
        seg = self.root / SEGMENTS
        if seg.exists():
            st = os.stat(seg)
            parts.append(f"plan:{st.st_mtime_ns}:{st.st_size}")
        import hashlib
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def index(self, refresh: bool = False) -> pa.Table:
        """Consolidated index; rebuilt from plan + markers when they changed since it was written."""
        path = self.root / INDEX
        sig = self._signature()
        if path.exists() and not refresh:
            try:
                table = read_parquet(path, "index")
            except CacheError:
                table = None  # derived: a damaged index is rebuilt from the plan and markers
            if table is not None and (table.schema.metadata or {}).get(
                    INDEX_SIGNATURE_KEY, b"").decode() == sig:
                return with_recordings(table)
        committed = {v: {s: self.shard_rows(v, s) for s in self.committed(v)} for v in self.views()}
        table = consolidate(self.plan(), committed)
        try:
            _write_parquet_atomic(path, table, {INDEX_SIGNATURE_KEY: sig.encode()}, self.root)
        except OSError:
            pass  # a read-only cache: the index is derived, so serve it from memory
        return table

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r}, dataset={self.dataset!r}, backend={self.backend!r})"

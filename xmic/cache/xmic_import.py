"""Import features made by the released X-MIC code.

Inputs: one pickle per (split, view) holding ``dict[segment_id -> float array [n_frames, D]]``
(every frame of the segment), and the dataset's annotation rows (``annotations.Segments``).
Output: the split planned into the cache, and every (view, shard) committed; segments that the
annotations name but a pickle lacks become failed rows. Frame indices are 0..n-1 of the stored
frames. Pickles go through ``safe_pickle`` (plain data and numpy arrays only).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xmic.cache import fingerprint as F
from xmic.cache.datasets import Segments
from xmic.files.atomic import sha256_file
from xmic.cache.cache_folder import Cache
from xmic.cache.index import make_plan
from xmic.cache.paths import CacheError
from xmic.cache.safe_pickle import safe_load_pickle
from xmic.cache.writer import ShardWriter, to_storage


def read_feature_pickle(path: Path) -> dict:
    """Load and check one X-MIC feature pickle: dict[str -> float array [n, D]], one D."""
    data = safe_load_pickle(path)
    if not isinstance(data, dict):
        raise CacheError(f"{path}: expected a dict of segment id -> array, got {type(data).__name__}")
    dims = set()
    for k, v in data.items():
        if not isinstance(k, str):
            raise CacheError(f"{path}: key {k!r} is not a segment id string")
        if not isinstance(v, np.ndarray) or v.ndim != 2:
            raise CacheError(f"{path}: key {k!r}: expected an array [frames, D], got "
                             f"{getattr(v, 'shape', type(v).__name__)}")
        dims.add(v.shape[1])
    if 0 in dims:
        raise CacheError(f"{path}: arrays of width 0 hold no embeddings; nothing was written")
    if len(dims) > 1:
        raise CacheError(f"{path}: arrays of several widths {sorted(dims)}; one view has one width")
    return data


def imported_model(name: str, weights_sha256: str, quick_gelu: bool) -> dict:
    """Model identity of imported features: what the user states; versions are unknown."""
    return F.model_identity(name, weights_sha256, "unknown (imported)", "unknown (imported)",
                            quick_gelu)


def imported_view_fingerprint(view: str, model: dict) -> dict:
    """X-MIC's features were made with CLIP preprocessing, every frame, hand crops by the crop rule."""
    return F.view_fingerprint(model, "unknown (imported)", F.clip_preprocess(),
                              F.hand_crop_rule() if "hand" in view else None,
                              {"policy": "all", "source": "xmic-pickle"})


def imported_vocab_fingerprint(model: dict, prompt: str) -> dict:
    return F.vocab_fingerprint(model, "unknown (imported)", prompt)


def _version(path: Path) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


def check_feature_pickle(cache: Cache, view: str, path: Path) -> tuple[int, str, tuple]:
    """A view's pickle read and checked (width, every value), then let go: (width, sha256,
    the file's size and mtime)."""
    version = _version(path)
    data = read_feature_pickle(path)
    if not data:
        raise CacheError(f"{path}: the pickle holds no segments")
    dim = next(iter(data.values())).shape[1]
    if view in cache.views() and cache.view(view)["dim"] != dim:
        raise CacheError(f"{path}: arrays have width {dim}, view {view} of this cache holds "
                         f"width {cache.view(view)['dim']}")
    for k, v in data.items():  # refuse bad values before anything is written
        to_storage(v, cache.config.dtype, dim, f"{path}: key {k!r}")
    return dim, sha256_file(path), version


def import_split(cache: Cache, segments: Segments, split: str, views: dict[str, Path],
                 fingerprints: dict[str, dict], shard_prefix: str | None = None,
                 progress=None) -> dict:
    """Plan ``segments`` as ``split`` and import each view's pickle. Every pickle is checked
    before anything is written; then each is read again and imported, one view in memory at a
    time (a view of EPIC-100 train is gigabytes). Re-running skips committed shards, so an
    interrupted import resumes. Returns a summary dict."""
    checked = {view: check_feature_pickle(cache, view, path) for view, path in views.items()}
    plan = make_plan(segments.columns, cache.config.shard_segments, shard_prefix or split)
    cache.add_plan(plan)
    plan_ids = set(segments.columns["segment_id"])
    summary = {"split": split, "segments": len(segments), "views": {}}
    shards = cache.shards(split)
    for view, (dim, digest, version) in checked.items():
        data = read_feature_pickle(views[view])
        if _version(views[view]) != version:
            raise CacheError(f"{views[view]}: the pickle changed while it was imported; import "
                             "again")
        committed = skipped = 0
        fp = fingerprints[view]
        done = cache.committed(view)  # one listing of the view, not one per shard
        for shard in shards:
            if shard in done:  # committed (segments missing from the pickle stay failed)
                skipped += 1
                continue
            with ShardWriter(cache, view, shard, dim, fp,
                             provenance={"format": "xmic-pickle", "file": str(Path(views[view])),
                                         "file_sha256": digest}) as w:
                for sid in w.segment_ids:
                    arr = data.get(sid)
                    if arr is None:
                        w.fail(sid, f"segment missing from {Path(views[view]).name}")
                    else:
                        w.add(sid, arr, range(arr.shape[0]))
                committed += int(w.commit())
            if progress:
                progress(view, shard)
        missing = sum(1 for s in plan_ids if s not in data)
        unused = sum(1 for s in data if s not in plan_ids)
        summary["views"][view] = {"dim": dim, "shards_committed": committed,
                                  "shards_already_done": skipped, "missing_segments": missing,
                                  "unused_pickle_keys": unused}
        del data  # one view in memory at a time
    cache.index(refresh=True)
    return summary


def import_pickles(cache_dir: Path, dataset: str, split: str, annotations: Path,
                   pickles: dict[str, Path], config, model: dict, **annotation_files) -> dict:
    """``xmic cache import``: read the annotations (epic or ego4d), open or create the cache and
    import every view's pickle with a progress bar. A cache this call creates is removed again
    when the import is refused. Returns ``import_split``'s summary."""
    from tqdm import tqdm

    from xmic.cache.datasets import dataset as dataset_record
    from xmic.cache.cache_folder import discard_if_new
    record = dataset_record(dataset)
    if not record.importable:
        raise CacheError(f"dataset {dataset!r}: the released code made no feature pickles for it")
    from xmic.cache.datasets import read_dataset
    segs, _ = read_dataset(dataset, annotations, split, None, **annotation_files)
    fps = {v: imported_view_fingerprint(v, model) for v in pickles}
    with discard_if_new(cache_dir):
        c = Cache.open_or_create(cache_dir, dataset, config)
        n_shards = -(-len(segs) // c.config.shard_segments) * len(pickles)
        with tqdm(total=n_shards, desc=f"import {split}", unit="shard", disable=None) as bar:
            return import_split(c, segs, split, pickles, fps, progress=lambda v, s: bar.update())

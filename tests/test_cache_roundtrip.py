"""Round trips on both backends: write, info, load, verify, convert, load again, bytes equal."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import fill_cache, segment_frames
from xmic.cache import Cache, CacheConfig, CacheError, ShardWriter, load_split
from xmic.cache.index import make_plan
from xmic.cache.convert import convert
from xmic.cache.info import info
from xmic.cache.verify import verify


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_write_load_convert_roundtrip(tmp_path, backend):
    cache = fill_cache(tmp_path / "a", backend=backend, n=11, fail_every=5)
    assert verify(cache, deep=True) == []
    d = info(cache)
    assert d["splits"]["train"] == {"segments": 11, "shards": 3, "ok": 9, "failed": 2, "pending": 0}
    # the one state rule: the 4 shards holding failed segments are failed, not done
    assert d["views"]["hand_crop"]["shards"] == {"done": 2, "pending": 0, "failed": 4, "running": 0}
    assert d["views"]["hand_crop"]["dim"] == 16

    data = load_split(cache, ["hand_crop", "full_frame"], "train")
    assert data.skipped == {"failed": 2}
    for view, va in data.views.items():
        assert va.features.dtype == np.float16 and va.features.flags.c_contiguous
        assert va.offsets[0] == 0 and va.offsets[-1] == va.features.shape[0]
        for i, sid in enumerate(data.segment_ids):
            want = segment_frames(sid, 16, view).astype(np.float16)
            assert np.array_equal(va.features[va.offsets[i]:va.offsets[i + 1]], want)
    fi = data.segments["frame_indices"].to_pylist()
    assert fi[0] == list(range(0, 2 * len(fi[0]), 2))

    other = "hdf5" if backend == "zarr" else "zarr"
    conv = convert(cache, tmp_path / "b", other)
    assert conv.backend == other
    assert verify(conv, deep=True) == []
    again = load_split(conv, ["hand_crop", "full_frame"], "train")
    for view in data.views:
        a, b = data.views[view], again.views[view]
        assert a.features.tobytes() == b.features.tobytes()
        assert np.array_equal(a.offsets, b.offsets)
    assert again.segments.drop_columns([]).equals(data.segments)
    # converting back gives the original bytes again
    back = convert(conv, tmp_path / "c", backend)
    assert load_split(back, ["hand_crop"], "validation").views["hand_crop"].features.tobytes() == \
        load_split(cache, ["hand_crop"], "validation").views["hand_crop"].features.tobytes()


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_same_input_gives_same_bytes(tmp_path, backend):
    """Two clean runs write byte-identical data and rows files (needed by crash tests)."""
    a = fill_cache(tmp_path / "a", backend=backend)
    b = fill_cache(tmp_path / "b", backend=backend)
    for view in a.views():
        for shard in a.committed(view):
            ma, mb = a.marker(view, shard), b.marker(view, shard)
            assert ma["checksum"] == mb["checksum"] and ma["rows_sha256"] == mb["rows_sha256"]
            assert ma["files"] == mb["files"]
            for rel in ma["files"]:
                pa_ = a.root / "views" / view / shard / rel
                pb_ = b.root / "views" / view / shard / rel
                assert pa_.read_bytes() == pb_.read_bytes(), rel


def test_float32_cache_keeps_values(tmp_path):
    cache = Cache.create(tmp_path / "c", "epic", CacheConfig(dtype="float32", shard_segments=2))
    cache.add_plan(make_plan({**__import__("helpers").segment_columns(3)}, 2, "train"))
    from helpers import fingerprint
    for shard in cache.shards():
        with ShardWriter(cache, "full_frame", shard, 8, fingerprint()) as w:
            for sid in w.segment_ids:
                w.add(sid, segment_frames(sid, 8, "x"), range(len(segment_frames(sid, 8, "x"))))
            w.commit()
    d = load_split(cache, ["full_frame"], "train")
    assert d.views["full_frame"].features.dtype == np.float32
    assert np.array_equal(d.views["full_frame"].features[: d.views["full_frame"].offsets[1]],
                          segment_frames(d.segment_ids[0], 8, "x"))


def test_fingerprint_mismatch_is_refused(small_cache):
    from helpers import fingerprint
    shard = small_cache.shards()[0]
    with pytest.raises(CacheError, match=r"fingerprint.*model\.name: 'ViT-B-16-quickgelu' != 'ViT-L-14'"):
        ShardWriter(small_cache, "full_frame", shard, 16, fingerprint("ViT-L-14")).start()
    with pytest.raises(CacheError, match="width 16, refusing data of width 32"):
        ShardWriter(small_cache, "full_frame", shard, 32, fingerprint()).start()


def test_writer_rejects_bad_segments(small_cache, tmp_path):
    from helpers import fingerprint, segment_columns
    cache = Cache.create(tmp_path / "w", "epic", CacheConfig(shard_segments=4))
    cache.add_plan(make_plan(segment_columns(4), 4, "train"))
    w = ShardWriter(cache, "full_frame", "train-00000", 4, fingerprint())
    sid = w.segment_ids[0]
    bad = np.ones((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(CacheError, match=f"segment {sid}: 1 frame"):
        w.add(sid, bad, [0, 1])
    with pytest.raises(CacheError, match="overflow float16"):
        w.add(sid, np.full((1, 4), 1e6, np.float32), [0])
    with pytest.raises(CacheError, match=r"expected an array \[frames, 4\]"):
        w.add(sid, np.ones((2, 5), np.float32), [0, 1])
    with pytest.raises(CacheError, match="not planned"):
        w.add("nope", np.ones((1, 4), np.float32), [0])
    w.add(sid, np.ones((1, 4), np.float32), [0])
    with pytest.raises(CacheError, match="given twice"):
        w.fail(sid, "x")
    with pytest.raises(CacheError, match="neither added nor failed"):
        w.commit()
    assert cache.shard_state("full_frame", "train-00000") != "done"


def test_all_failed_shard_commits_empty(tmp_path):
    from helpers import fingerprint, segment_columns
    for backend in ("zarr", "hdf5"):
        cache = Cache.create(tmp_path / backend, "epic", CacheConfig(backend=backend, shard_segments=3))
        cache.add_plan(make_plan(segment_columns(3), 3, "train"))
        with ShardWriter(cache, "full_frame", "train-00000", 4, fingerprint()) as w:
            for sid in w.segment_ids:
                w.fail(sid, "unreadable video")
            assert w.commit()
        assert verify(cache, deep=True) == []
        d = load_split(cache, ["full_frame"], "train")
        assert d.views["full_frame"].features.shape == (0, 4) and d.skipped == {"failed": 3}
        assert set(cache.index()["error"].to_pylist()) == {"full_frame: unreadable video"}


def test_split_and_plan_rules(small_cache):
    from helpers import segment_columns
    plan = make_plan(segment_columns(10, "train"), 4, "train")
    small_cache.add_plan(plan)  # identical split again: no-op
    changed = segment_columns(10, "train")
    changed["noun_id"][0] = 4
    with pytest.raises(CacheError, match="already in this cache"):
        small_cache.add_plan(make_plan(changed, 4, "train"))
    clash = segment_columns(2, "test")
    clash["segment_id"] = ["P01_01_train_0", "new"]
    with pytest.raises(CacheError, match="already in this cache under another split"):
        small_cache.add_plan(make_plan(clash, 4, "test"))
    with pytest.raises(CacheError, match="no split 'test'"):
        load_split(small_cache, ["full_frame"], "test")
    with pytest.raises(CacheError, match="no view 'dino'"):
        load_split(small_cache, ["dino"], "train")


def test_load_skips_segments_of_uncommitted_view(tmp_path):
    cache = fill_cache(tmp_path / "c", views=("full_frame",), n=6)
    from helpers import fingerprint
    shard = cache.shards("train")[0]
    with ShardWriter(cache, "hand_crop", shard, 16, fingerprint(crop=True)) as w:
        for sid in w.segment_ids:
            w.add(sid, segment_frames(sid, 16, "hand_crop"), range(len(segment_frames(sid, 16, "hand_crop"))))
        w.commit()
    d = load_split(cache, ["full_frame", "hand_crop"], "train")
    assert len(d.segment_ids) == 4 and d.skipped == {"not in hand_crop": 2}
    assert d.views["full_frame"].offsets.shape == (5,)


def test_a_writer_touches_nothing_until_it_starts(tmp_path):
    from helpers import fill_cache, fingerprint
    cache = fill_cache(tmp_path / "c", n=4, views=(), splits=("train",))
    w = ShardWriter(cache, "full_frame", cache.shards()[0], 16, fingerprint())
    assert not (cache.root / "views").exists()  # no view record, claim or attempt yet
    with w:
        assert cache.shard_state("full_frame", w.shard) == "running"
        assert (cache.root / "views" / "full_frame" / "view.json").exists()

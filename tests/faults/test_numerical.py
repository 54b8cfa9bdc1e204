"""Numerical faults: embeddings that overflow float16 in extraction are detected and reported
(the shard fails with the reason, nothing is written as Inf), and NaN/Inf features stop training
with the segment ids (test_train_loop::test_bad_inputs_refused_before_training covers NaN in a
data file; here an Inf)."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from extract_data import TINY, make_epic
from train_data import make_train_cache
from xmic.cache import Cache, CacheError
from xmic.cache.verify import verify
from xmic.config import from_dict, load_config
from xmic.extract import pipeline
from xmic.extract.config import ExtractConfig
from xmic.slurm.status import status
from xmic.train.config import TrainConfig
from xmic.train.loop import train

pytestmark = pytest.mark.faults


def test_fp16_overflow_in_extraction_is_reported(tmp_path, monkeypatch):
    e = make_epic(tmp_path / "e", videos=("P01_01", "P01_02"))
    pipeline.plan(tmp_path / "c", "epic", e["annotations"], e["root"], "train", boxes=e["boxes"],
                  cache_config=None)
    real = pipeline.encode_packed

    def loud(enc, tensors, batch):  # an encoder whose outputs leave float16's range
        embs, used = real(enc, tensors, batch)
        return [x * 1e6 for x in embs], used
    monkeypatch.setattr(pipeline, "encode_packed", loud)
    cfg = from_dict(ExtractConfig, {"model": str(TINY), "weights": "random", "workers": 0,
                                    "device": "cpu"})
    s = pipeline.run_shards(tmp_path / "c", cfg, echo=lambda *a: None)
    assert s["shards_failed"] == 1 and s["shards_done"] == 0
    assert "overflow float16" in s["failures"][0] and "float32 cache" in s["failures"][0]
    _, report, summary, _ = status(tmp_path / "c")
    assert summary["failed"] == 1 and "overflow float16" in report["train-00000"]["error"]
    c = Cache.open(tmp_path / "c")
    assert c.committed("full_frame") == {} and verify(c, partial=True) == []


def test_inf_in_features_stops_training_with_the_segment(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=20)
    shard = cache.shards()[0]
    z = zarr.open_array(str(cache.root / "views" / "full_frame" / shard / "data.zarr"), mode="r+")
    z[0, 3] = np.inf  # by hand: the cache itself refuses to store Inf
    cfg = load_config(TrainConfig, None, ["label=noun", "epochs=1", "device=cpu"])
    with pytest.raises(CacheError, match=r"NaN or Inf in 1 segment\(s\): \['train_0'\]"):
        train(cache.root, cfg, tmp_path / "run", echo=lambda *a, **k: None)
    assert not (tmp_path / "run" / "last.pt").exists()

"""Numerical faults: embeddings that overflow float16 in extraction are detected and reported
(the shard fails with the reason, nothing is written as Inf), and NaN/Inf features stop training
with the segment ids (test_train_loop::test_bad_inputs_refused_before_training covers NaN in a
data file; here an Inf)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from extract_data import TINY, make_epic
from train_data import make_train_cache
from xmic.cache import Cache, CacheError
from xmic.cache.verify import verify
from xmic.config import from_dict, load_config
from xmic.extract import pipeline, planning
from xmic.extract.planning import SplitSource
from xmic.extract.config import ExtractConfig
from xmic.slurm.status import status
from xmic.train.config import TrainConfig
from xmic.train.loop import train

pytestmark = pytest.mark.faults


def test_fp16_overflow_in_extraction_is_reported(tmp_path, monkeypatch):
    e = make_epic(tmp_path / "e", videos=("P01_01", "P01_02"))
    planning.plan(tmp_path / "c", SplitSource("epic", e["annotations"], e["root"], "train",
                                              boxes=e["boxes"]), cache_config=None)
    real = pipeline.encode_packed

    def loud(enc, tensors, batch, **kw):  # an encoder whose outputs leave float16's range
        embs, used = real(enc, tensors, batch, **kw)
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


@pytest.mark.parametrize("where", ["loss", "weights"])
def test_a_diverging_run_fails_and_saves_nothing_of_that_epoch(tmp_path, monkeypatch, where):
    """Epoch 2 goes non-finite (an absurd lr makes the loss NaN; or a weight is poisoned after the
    step): the run stops with exit 1 naming epoch and cause, last.pt and checkpoint.pt still hold
    epoch 1 with finite weights, and no epoch-2 row reaches metrics.jsonl."""
    import torch
    from click.testing import CliRunner

    from xmic.cli import main
    from xmic.train import steppers
    cache = make_train_cache(tmp_path / "c", n=24)
    real = steppers.train_step
    calls = {"n": 0}
    steps_per_epoch = 1  # batch_size=64 > 22 training segments

    def poisoned(model, opt, *a, **k):
        calls["n"] += 1
        loss, logits = real(model, opt, *a, **k)
        if calls["n"] > steps_per_epoch:  # epoch 2
            if where == "loss":
                return loss * float("nan"), logits
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("inf")
        return loss, logits
    monkeypatch.setattr(steppers, "train_step", poisoned)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--cache", str(cache.root), "--label", "noun",
                                  "--out", str(run), "--epochs", "3", "--device", "cpu",
                                  "--set", "batch_size=64"])
    assert r.exit_code == 1, r.output
    msg = "the loss is nan" if where == "loss" else "non-finite weights in"
    assert "training diverged at epoch 2" in r.output and msg in r.output, r.output
    assert "Traceback" not in r.output
    for name in ("last.pt", "checkpoint.pt"):
        ck = torch.load(run / name, weights_only=True)
        assert ck["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.mark.parametrize("setting, words", [
    ("optim.lr=0", "lr must be a finite number > 0"),
    ("optim.lr=-1e-3", "lr must be a finite number > 0"),
    ("optim.lr=.nan", "lr must be a finite number > 0"),
    ("optim.lr=.inf", "lr must be a finite number > 0"),
    ("optim.betas=[0.9, 1.0]", "betas must be two numbers in [0, 1)"),
    ("optim.betas=[-0.1, 0.9]", "betas must be two numbers in [0, 1)"),
    ("model.mlp_ratio=0", "mlp_ratio must be a finite number > 0"),
    ("model.xmic.out_hidden_ratio=-1", "out_hidden_ratio: -1.0 is outside the allowed range [0.0, 16.0]"),
    ("model.clip_adapter.ratio=0", "model.clip_adapter: ratio must be a finite number > 0"),
    ("model.clip_adapter_ratio=0", "model.clip_adapter: ratio must be a finite number > 0"),
    ("batch_size=0", "batch_size: 0 is outside the allowed range [1, 1048576]"),
    ("eval_batch_size=-4", "eval_batch_size: -4 is outside the allowed range"),
    ("frames=100000", "frames: 100000 is outside the allowed range [1, 1024]"),
    ("frames=0", "frames: 0 is outside the allowed range [1, 1024]"),
    ("model.xmic.heads=3", "model.xmic.heads=3 does not divide the conditioning width 32"),
])
def test_configs_that_cannot_train_are_refused_in_one_line(tmp_path, setting, words):
    from click.testing import CliRunner

    from xmic.cli import main
    cache = make_train_cache(tmp_path / "c", n=12)
    r = CliRunner().invoke(main, ["train", "--cache", str(cache.root), "--label", "noun",
                                  "--out", str(tmp_path / "run"), "--epochs", "1", "--device",
                                  "cpu", "--set", setting])
    assert r.exit_code == 2, r.output
    assert words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "run" / "last.pt").exists()

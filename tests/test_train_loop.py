"""Sampling, learning, zero-shot, resume, held-out selection, bad input, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import run_xmic
from train_data import make_train_cache
from xmic.cache import CacheError
from xmic.config import load_config
from xmic.train.checkpoint import CheckpointError, load_checkpoint
from xmic.train.config import TrainConfig
from xmic.train.data import heldout_split
from xmic.train.loop import train


def cfg(*sets, **kw) -> TrainConfig:
    base = ["device=cpu", "batch_size=16", "epochs=2", "model.xmic.heads=2"]
    return load_config(TrainConfig, None, base + list(sets) + [f"{k}={v}" for k, v in kw.items()])


def quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def random_cache(tmp_path_factory):
    return make_train_cache(tmp_path_factory.mktemp("rand") / "c", mode="random")


def test_heldout_is_by_video_and_seed_free():
    vids = [f"V{i % 10}" for i in range(100)]
    a, b = heldout_split(vids, 0.2)
    assert not {vids[i] for i in a} & {vids[i] for i in b} and len({vids[i] for i in b}) == 2
    assert np.array_equal(heldout_split(vids, 0.2)[1], b)
    assert len(heldout_split(vids, 0.0)[1]) == 0 and len(heldout_split(["x"] * 5, 0.5)[1]) == 0


def test_xmic_overfits_a_small_set(tmp_path):
    # noisy class structure: zero-shot gets about 80 %, the adapter must fit the rest. (Arbitrary
    # labels on random text are out of its reach: a_v is one non-negative shift for all classes.)
    cache = make_train_cache(tmp_path / "c", mode="constant", dim=128, n=48, classes=4, noise=5.0)
    c = cfg("heldout_fraction=0", "optim.warmup_epochs=1", "optim.lr=3e-3", epochs=80)
    s = train(cache.root, c, tmp_path / "run", echo=quiet)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_top1"] < 90 and rows[-1]["train_top1"] == 100.0
    assert s["best"]["epoch"] == 80  # no held-out set: the last epoch


@pytest.mark.parametrize("method", ["linear", "clip-adapter"])
def test_baselines_learn(random_cache, tmp_path, method):
    c = cfg("heldout_fraction=0", "optim.warmup_epochs=1", "optim.lr=1e-2", epochs=30, method=method)
    train(random_cache.root, c, tmp_path / method, echo=quiet)
    rows = [json.loads(x) for x in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_top1"] > rows[0]["train_top1"] + 20


def test_zeroshot_expected_accuracy(tmp_path):
    cache = make_train_cache(tmp_path / "c", mode="constant", n=60, classes=5, noise=4.0)
    s = train(cache.root, cfg(method="zeroshot", heldout_fraction=0.5), tmp_path / "zs", echo=quiet)
    from xmic.cache import load_split
    d = load_split(cache, ["hand_crop"], "train")
    f = d.views["hand_crop"]
    v = f.features[f.offsets[:-1]]                                      # one frame per segment
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    t = cache.means / np.linalg.norm(cache.means, axis=1, keepdims=True)
    labels = d.segments["noun_id"].to_numpy()
    _, held = heldout_split(d.segments["video_id"].to_pylist(), 0.5)
    expected = 100 * np.mean((v[held] @ t.T).argmax(1) == labels[held])
    assert s["best"]["score"] == pytest.approx(expected) and 40 < expected < 100
    ck = load_checkpoint(tmp_path / "zs" / "checkpoint.pt")
    assert ck["method"] == "zeroshot" and ck["config"]["model"]["zeroshot_vocab"] == "{label}.photo"


def test_resume_gives_the_same_weights(random_cache, tmp_path):
    train(random_cache.root, cfg(epochs=4), tmp_path / "full", echo=quiet)
    train(random_cache.root, cfg(epochs=2), tmp_path / "half", echo=quiet)
    train(random_cache.root, cfg(epochs=4), tmp_path / "half", resume=True, echo=quiet)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "half" / "last.pt")
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    with pytest.raises(CheckpointError, match=r"another config \(model.*alpha"):
        train(random_cache.root, cfg("model.alpha=1.0", epochs=5), tmp_path / "half", resume=True,
              echo=quiet)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        train(random_cache.root, cfg(epochs=1), tmp_path / "half", echo=quiet)


def test_heldout_selection_and_target_option(random_cache, tmp_path):
    target = make_train_cache(tmp_path / "t", mode="random", seed=3, splits=("val",))
    s = train(random_cache.root, cfg(epochs=3, select_on_target_test_data=f"{target.root}:val"),
              tmp_path / "r", echo=quiet)
    assert s["selected_on"].startswith("target test data")
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all("target_top1" in r and "heldout_top1" in r for r in rows)
    best = max(rows, key=lambda r: (r["target_top1"], -r["epoch"]))  # a tie keeps the earliest
    assert [r["epoch"] for r in rows if r["selected"]][-1] == best["epoch"]
    assert all(r["selected_because"] for r in rows)
    assert (tmp_path / "r" / "train_curve.png").stat().st_size > 1000


def test_selection_ties_go_to_the_lower_loss_then_the_later_epoch():
    from xmic.train.run_record import select_epoch
    best, rows = None, [(50.0, 2.0), (50.0, 1.5), (50.0, 1.5), (40.0, 0.1), (50.0, 1.7)]
    picked = []
    for epoch, (top1, loss) in enumerate(rows, start=1):
        best, selected, why = select_epoch({"heldout_top1": top1, "heldout_loss": loss}, best, epoch)
        picked.append(selected)
        assert why
    assert picked == [True, True, True, False, False] and best["epoch"] == 3
    _, _, why = select_epoch({"heldout_top1": 50.0, "heldout_loss": 1.5}, best, 6)
    assert "tie epoch 3: the later epoch" in why
    _, _, why = select_epoch({"heldout_top1": 50.0, "heldout_loss": 1.0}, best, 7)
    assert "loss 1 < 1.5" in why
    assert select_epoch({}, None, 4)[2] == "last epoch (no selection set)"


def test_released_selection_keeps_the_earliest_epoch_of_a_tie():
    """On the target's test data (the released behaviour) only a strictly higher top-1 wins,
    as the released trainer's ``is_best = curr > best``: the loss never breaks a tie."""
    from xmic.train.run_record import select_epoch
    best, picked = None, []
    for epoch, (top1, loss) in enumerate([(40.0, 2.0), (50.0, 2.0), (50.0, 0.5), (50.0, 3.0),
                                          (51.0, 9.0)], start=1):
        best, selected, why = select_epoch({"target_top1": top1, "target_loss": loss}, best, epoch)
        picked.append(selected)
    assert picked == [True, True, False, False, True] and best["epoch"] == 5
    _, selected, why = select_epoch({"target_top1": 51.0, "target_loss": 0.1}, best, 6)
    assert not selected and "the released trainer keeps the earlier epoch" in why


def test_bad_inputs_refused_before_training(tmp_path):
    good = make_train_cache(tmp_path / "g", n=20)
    with pytest.raises(CacheError, match="no vocabulary 'verb.clip'"):
        train(good.root, cfg("model.zeroshot_vocab={label}.clip", method="zeroshot", label="verb"),
              tmp_path / "a", echo=quiet)
    with pytest.raises(CacheError, match="reads view 'dino'"):
        train(good.root, cfg("model.conditioning_views=[hand_crop, dino]"), tmp_path / "b", echo=quiet)
    with pytest.raises(CacheError, match="no split 'val'"):
        train(good.root, cfg(split="val"), tmp_path / "c", echo=quiet)
    wide = make_train_cache(tmp_path / "w", n=20, view_dims={"full_frame": 48})
    with pytest.raises(CacheError, match=r"widths \[32, 48\]"):
        train(wide.root, cfg(), tmp_path / "d", echo=quiet)
    with pytest.raises(CacheError, match="width 48 but vocabulary 'noun' has width 32"):
        train(wide.root, cfg("model.classified_view=full_frame", method="linear"), tmp_path / "e",
              echo=quiet)
    from train_data import vocab_fp
    from xmic.cache.vocab import add_vocab
    add_vocab(good, "noun", [f"class{i}" for i in range(4)], np.ones((4, 32)), "{}",
              vocab_fp(name="ViT-L-14"), replace=True)
    with pytest.raises(CacheError, match="made by another model.*ViT-L-14"):
        train(good.root, cfg(), tmp_path / "f", echo=quiet)
    add_vocab(good, "noun", ["a", "b"], np.ones((2, 32)), "{}", vocab_fp(), replace=True)
    with pytest.raises(CacheError, match=r"noun ids outside the vocabulary's 2 classes"):
        train(good.root, cfg(), tmp_path / "g2", echo=quiet)
    nan = make_train_cache(tmp_path / "n", n=20)
    shard = nan.shards()[0]
    import zarr  # the cache refuses NaN, so put one in its data file by hand
    z = zarr.open_array(str(nan.root / "views" / "hand_crop" / shard / "data.zarr"), mode="r+")
    z[2, 0] = np.nan
    with pytest.raises(CacheError, match=r"NaN or Inf in 1 segment\(s\): \['train_0'\]"):
        train(nan.root, cfg(), tmp_path / "h", echo=quiet)
    from helpers import fill_cache
    failed = fill_cache(tmp_path / "x", n=4, fail_every=1)  # every segment failed in extraction
    add_vocab(failed, "noun", [f"c{i}" for i in range(5)], np.ones((5, 16)), "{}", vocab_fp())
    with pytest.raises(CacheError, match=r"no usable segment.*'failed': 4"):
        train(failed.root, cfg(), tmp_path / "i", echo=quiet)
    for sub in "abcdefghi":
        assert not (tmp_path / sub / "last.pt").exists()


def test_cli_train_seeds(random_cache, tmp_path):
    cp = run_xmic("train", "--cache", random_cache.root, "--label", "noun", "--method", "xmic",
                  "--out", tmp_path / "run", "--epochs", "2", "--seeds", "1,2", "--device", "cpu",
                  "--set", "batch_size=16", "--set", "model.heads=2")
    assert "seed-1: selected epoch" in cp.stdout and "held out" in cp.stdout
    for s in (1, 2):
        d = tmp_path / "run" / f"seed-{s}"
        for f in ("config.yaml", "checkpoint.pt", "last.pt", "metrics.jsonl", "train_curve.png"):
            assert (d / f).exists(), f
        ck = load_checkpoint(d / "checkpoint.pt")
        assert ck["config"]["seed"] == s and ck["fingerprints"]["views"]["hand_crop"]["model"]
    a = load_checkpoint(tmp_path / "run" / "seed-1" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "seed-2" / "last.pt")["model"]
    assert not torch.equal(a["temporal_embedding"], b["temporal_embedding"])
    cp = run_xmic("train", "--cache", random_cache.root, "--out", tmp_path / "x", "--set",
                  "model.alpah=1", check=False)
    assert cp.returncode == 2 and "unknown key 'alpah'" in cp.stderr


def test_tensorboard_and_wandb_beside_the_run(tmp_path, monkeypatch):
    """Grouped tags per step (train/loss, train/lr) and per epoch (train/…, heldout/…), the
    hyper-parameters; W&B offline in RUN/wandb, read back from its run folder; train.log holds
    what was printed and config.yaml says which xmic wrote it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cache = make_train_cache(tmp_path / "c", n=24)
    printed = []
    c = cfg(epochs=2, batch_size=4)
    import dataclasses
    c = dataclasses.replace(c, log=dataclasses.replace(c.log, tensorboard=True, wandb=True,
                                                       group="g1"))
    out = train(cache.root, c, tmp_path / "run", echo=printed.append)
    ev = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/top1", "heldout/top1"} <= tags, tags
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    per_epoch = -(-out["train_segments"] // 4)
    assert [e.step for e in ev.Scalars("train/loss")] == list(range(1, 2 * per_epoch + 1))
    assert [e.step for e in ev.Scalars("heldout/top1")] == [1, 2]
    assert [e.value for e in ev.Scalars("heldout/top1")] == pytest.approx(
        [r["heldout_top1"] for r in rows])
    assert "hparams" in ev.PluginTagToContent("hparams") or ev.PluginTagToContent("hparams")
    runs = list((tmp_path / "run" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "run" / "wandb").rglob("*"))[:20]
    from helpers import read_wandb_run
    logged, group = read_wandb_run(next(runs[0].glob("run-*.wandb")))
    assert {"train/loss", "train/lr", "train/epoch_loss", "heldout/top1"} <= logged, logged
    assert group == "g1"
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.splitlines() == printed and "epoch 2:" in log
    import xmic
    assert (tmp_path / "run" / "config.yaml").read_text().startswith(
        f"# written by xmic {xmic.__version__}")


def test_a_run_from_before_a_config_field_resumes(tmp_path):
    """Checkpoints made before ``log`` existed (with the old ``log_tensorboard``) resume: the
    old key is read as today's, a missing field as its default."""
    import torch
    cache = make_train_cache(tmp_path / "c", n=24)
    train(cache.root, cfg(epochs=1), tmp_path / "run", echo=quiet)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    del ck["config"]["log"]
    ck["config"]["log_tensorboard"] = False
    torch.save(ck, tmp_path / "run" / "last.pt")
    s = train(cache.root, cfg(epochs=2), tmp_path / "run", resume=True, echo=quiet)
    assert s["epochs"] == 2


def test_two_plans_of_one_cache_never_lose_a_split(tmp_path, monkeypatch):
    """extract_plan.json is read, changed and written under the cache lock: two planners of
    different splits at once both end up in it (a slow read widens the window they would race in)."""
    import threading
    import time

    from extract_data import make_epic
    from xmic.extract import plan_record
    from xmic.extract import planning as pipeline
    from xmic.extract.planning import SplitSource
    worlds = {s: make_epic(tmp_path / s, videos=(v,), segs_per_video=2)
              for s, v in (("train", "P01_01"), ("a", "P02_01"), ("b", "P03_01"))}
    real = plan_record.read_json

    def slow(*a, **k):
        out = real(*a, **k)
        time.sleep(0.3)
        return out
    monkeypatch.setattr(plan_record, "read_json", slow)
    cache = tmp_path / "c"
    e = worlds["train"]
    pipeline.plan(cache, SplitSource("epic", e["annotations"], e["root"], "train"),
                  views=("full_frame",))
    errors = []

    def plan(split):
        w = worlds[split]
        try:
            pipeline.plan(cache, SplitSource("epic", w["annotations"], w["root"], split),
                          views=("full_frame",))
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=plan, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    meta = json.loads((cache / "extract_plan.json").read_text())
    assert set(meta["splits"]) == {"train", "a", "b"}


def test_compile_wraps_the_training_steps_and_may_change_on_resume(random_cache, tmp_path,
                                                                    monkeypatch):
    """``compile=true``: the training steps call ``torch.compile(model)`` (here a recording
    stand-in: compiling takes minutes on 2 CPU cores; bench/train.py --compile measures the
    real one); checkpoints hold the plain model's weights; turning it on resumes the run."""
    calls = {"compile": 0, "steps": 0}

    class Compiled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, *a):
            calls["steps"] += 1
            return self.inner(*a)

    def fake_compile(model, **kw):
        calls["compile"] += 1
        return Compiled(model)
    monkeypatch.setattr(torch, "compile", fake_compile)
    train(random_cache.root, cfg(epochs=1), tmp_path / "r", echo=quiet)
    assert calls == {"compile": 0, "steps": 0}
    train(random_cache.root, cfg("compile=true", epochs=2), tmp_path / "r", resume=True, echo=quiet)
    steps_per_epoch = -(-int(0.9 * 48) // 16)
    assert calls["compile"] == 1 and calls["steps"] >= steps_per_epoch - 1
    from xmic.train.checkpoint import load_checkpoint
    state = load_checkpoint(tmp_path / "r" / "last.pt")["model"]
    assert not any(k.startswith(("inner.", "_orig_mod.")) for k in state)


def test_compile_without_a_compiler_is_one_line(random_cache, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    from xmic.config import ConfigError
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        train(random_cache.root, cfg("compile=true", epochs=1), tmp_path / "r", echo=quiet)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_the_held_out_share_is_counted_in_segments_and_recordings(random_cache, tmp_path):
    lines = []
    train(random_cache.root, cfg("heldout_fraction=0.25", epochs=1), tmp_path / "r",
          echo=lines.append)
    from xmic.cache import load_split
    data = load_split(random_cache, ["hand_crop", "full_frame"], "train")
    videos = sorted(set(data.segments["video_id"].to_pylist()))
    import re
    line = next(x for x in lines if " held out " in x)
    m = re.search(r"(\d+) held out \((\d+)% of the segments: (\d+) of (\d+) recordings\)", line)
    assert m, line
    held, share, held_v, all_v = map(int, m.groups())
    assert all_v == len(videos) and held_v == round(0.25 * len(videos))
    assert share == round(100 * held / len(data.segment_ids))


def test_ctrl_c_in_train_says_how_to_resume(random_cache, tmp_path, monkeypatch):
    from xmic.train import loop
    real, calls = loop.run_epoch, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(loop, "run_epoch", interrupted)
    run = tmp_path / "run"
    cp = run_xmic("train", "--cache", random_cache.root, "--label", "noun", "--out", run,
                  "--epochs", "3", "--device", "cpu", "--set", "batch_size=16",
                  "--set", "model.xmic.heads=2", check=False)
    assert cp.returncode == 130 and "Aborted" not in cp.stderr, cp.stderr
    assert f"{run}/last.pt holds the last finished epoch" in cp.stderr
    assert "run the same command with --resume to continue" in cp.stderr
    from xmic.train.checkpoint import load_checkpoint
    assert load_checkpoint(run / "last.pt")["epoch"] == 1

"""CoOp and CoCoOp (SPEC §5): parameter counts, the frozen tower reproduced, learning, what the
logits depend on, chunking and recomputation, resume, the tower resolved (or refused) from the
vocabulary's fingerprint, and evaluation on another cache's class names."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
import torch
import torch.nn.functional as F
from torch import nn

from helpers import run_xmic
from extract_data import TINY
from train_data import NOUNS, make_prompt_cache, make_train_cache, tiny_tower_identity, vocab_fp
from xmic.cache import Cache
from xmic.config import load_config
from xmic.towers.text_tower import TextTowerError, load_text_tower
from xmic.train.build import text_input
from xmic.train.config import TrainConfig
from xmic.train.data import load_bank
from xmic.train.inference import evaluate_bank, load_run, predict_logits
from xmic.train.loop import train
from xmic.train.model import ZeroShot, trainable_parameters
from xmic.train.prompt_model import CoCoOp, CoOp, phrase_embedding, prompt_token_ids

SOURCE = {"model": str(TINY), "weights": "random"}


@pytest.fixture(scope="module")
def tower():
    return load_text_tower(vocab_fp(model=tiny_tower_identity()), SOURCE, "cpu")


class FakeTower(nn.Module):
    """Width-W stand-in (counts only): embeddings and a mean-pool projection, frozen."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        self.width = width
        self.emb = nn.Embedding(100, width)
        self.proj = nn.Linear(width, dim)
        for p in self.parameters():
            p.requires_grad_(False)

    def embed(self, ids):
        return self.emb(ids)

    def forward(self, x, ids):
        return self.proj(x.mean(1))


def test_parameter_counts_at_clip_widths():
    """D = 512, width 512, M = 16: CoOp 16·512 context + ℓ; CoCoOp adds the meta-net
    512 -> 32 -> 512 (with biases). The tower adds nothing (frozen, outside the state dict)."""
    t = FakeTower(512, 512)
    coop, cocoop = CoOp(t, 512, context=16), CoCoOp(t, 512, 512, context=16)
    assert trainable_parameters(coop) == 16 * 512 + 1 == 8_193
    assert trainable_parameters(cocoop) == 8_192 + (512 * 32 + 32) + (32 * 512 + 512) + 1 == 41_505
    assert set(coop.state_dict()) == {"ctx", "logit_scale"}
    assert not any(k.startswith("tower") for k in cocoop.state_dict())


def test_known_prompt_reproduces_the_frozen_towers_class_embeddings(tower):
    """Context = the embeddings of "a photo of a" (M = 4) and a meta-net whose output is zero:
    both give exactly the tower's embeddings of "a photo of a {name}" (no trailing ".", as the
    released trainers prompt)."""
    names = NOUNS[:5]
    init = phrase_embedding(tower, "a photo of a")
    assert init.shape == (4, tower.width)
    ids = prompt_token_ids(tower, names, 4)
    want = F.normalize(tower.encode_texts([f"a photo of a {n}" for n in names]), dim=-1)
    assert int(tower.end_positions(ids)[0]) == 1 + 4 + len(tower.tokenize([names[0]])[0].nonzero()) - 2
    coop = CoOp(tower, tower.width, context=4, init=init)
    assert torch.allclose(coop.class_embeddings(ids), want, atol=1e-5)
    cocoop = CoCoOp(tower, tower.dim, tower.width, context=4, init=init)
    nn.init.zeros_(cocoop.meta_net[2].weight)
    nn.init.zeros_(cocoop.meta_net[2].bias)
    f = torch.randn(3, 6, tower.dim)
    v = F.normalize(F.normalize(f, dim=-1).mean(1), dim=-1)
    assert torch.allclose(cocoop(f, None, ids), 100 * v @ want.t(), atol=1e-3)
    assert torch.allclose(coop(f, None, ids), cocoop(f, None, ids), atol=1e-4)


class Spy(nn.Module):
    def __init__(self, tower):
        super().__init__()
        self.tower, self.calls = tower, []
        self.width, self.dim = tower.width, tower.dim

    def embed(self, ids):
        return self.tower.embed(ids)

    def forward(self, x, ids):
        out = self.tower(x, ids)
        self.calls.append(out.detach())
        return out


def test_cocoop_text_depends_on_the_video_and_coops_does_not(tower):
    ids = prompt_token_ids(tower, NOUNS[:4], 16)
    f = torch.randn(3, 5, tower.dim)
    spy = Spy(tower)
    CoOp(spy, tower.width, init=phrase_embedding(tower, "a photo of a"))(f, None, ids)
    assert [len(c) for c in spy.calls] == [4]  # C sequences, whatever the batch
    spy.calls.clear()
    torch.manual_seed(0)  # 16 meta-net units at the tiny width (its default D/16 is 2, often dead)
    m = CoCoOp(spy, tower.dim, tower.width, text_batch=4096, meta_ratio=0.5)
    logits = m(f, None, ids)
    feats = spy.calls[0].reshape(3, 4, -1)      # B x C sequences: one text per (video, class)
    assert not torch.allclose(feats[0], feats[1], atol=1e-4)
    alone = m(f[1:2], None, ids)                # a video's logits do not depend on its batch
    assert torch.allclose(alone, logits[1:2], atol=1e-4)
    other = f.clone()
    other[0] = torch.randn(5, tower.dim)
    assert not torch.allclose(m(other, None, ids)[0], logits[0], atol=1e-3)


def test_cocoop_passes_and_recompute_change_nothing_but_cost(tower):
    ids = prompt_token_ids(tower, NOUNS[:5], 16)
    torch.manual_seed(0)  # the inputs too: with a meta-net of D/16 = 2 units, some draws leave
    f = torch.randn(4, 3, tower.dim)  # every ReLU at 0 and no gradient (it varied by test order)
    a = CoCoOp(tower, tower.dim, tower.width, text_batch=4096, recompute=False)
    b = CoCoOp(tower, tower.dim, tower.width, text_batch=3, recompute=True)  # 3 videos x 1 class
    b.load_state_dict(a.state_dict())
    frozen = {k: v.clone() for k, v in tower.state_dict().items()}
    la, lb = a(f, None, ids), b(f, None, ids)
    assert torch.allclose(la, lb, atol=1e-4)
    la.logsumexp(1).sum().backward()
    lb.logsumexp(1).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert pa.grad is not None and pa.grad.abs().sum() > 0, f"no gradient reaches {name}"
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4, rtol=1e-3), name
    assert all(p.grad is None for p in tower.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in tower.state_dict().items())


def _cfg(method: str, *sets) -> TrainConfig:
    return load_config(TrainConfig, None, [f"method={method}", "device=cpu", "batch_size=16",
                                           "heldout_fraction=0", "optim.warmup_epochs=1",
                                           "optim.lr=5e-3", *sets])


def test_coop_learns_beyond_zero_shot(tmp_path, tower):
    """Frames are class means unrelated to the text: zero-shot is near chance; CoOp's context
    learns to separate the classes on the training data."""
    cache = make_prompt_cache(tmp_path / "c", n=64)
    bank = load_bank(cache, "train", ["hand_crop"], "noun", 4, torch.device("cpu"))
    cfg = _cfg("zeroshot", "model.zeroshot_vocab=noun")
    w = text_input(cfg, NOUNS[:4], np.asarray(tower.encode_texts(NOUNS[:4])), None, "cpu")
    zero_shot = evaluate_bank(ZeroShot(), bank, w, cfg)["top1"]
    train(tmp_path / "c", _cfg("coop", "epochs=8"), tmp_path / "run", echo=lambda *a: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_top1"] > zero_shot + 20, (zero_shot, [r["train_top1"] for r in rows])
    assert rows[-1]["train_top1"] > rows[0]["train_top1"]


@pytest.mark.parametrize("method", ["coop", "cocoop"])
def test_resume_equals_an_uninterrupted_run(tmp_path, method):
    make_prompt_cache(tmp_path / "c", n=40, classes=3)
    cfg = _cfg(method, "epochs=3", "heldout_fraction=0.25")
    quiet = dict(echo=lambda *a: None)
    train(tmp_path / "c", cfg, tmp_path / "full", **quiet)
    train(tmp_path / "c", _cfg(method, "epochs=1", "heldout_fraction=0.25"), tmp_path / "part",
          **quiet)
    train(tmp_path / "c", cfg, tmp_path / "part", resume=True, **quiet)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"][-1]["heldout_top1"] == b["history"][-1]["heldout_top1"]
    assert a["text_tower"] == {"model": str(TINY), "weights": "random"}


def test_a_tower_that_cannot_be_resolved_or_differs_is_refused(tmp_path):
    make_train_cache(tmp_path / "c", n=16)  # a made-up model whose weights nobody recorded
    r = run_xmic("train", "--cache", tmp_path / "c", "--method", "coop", "--out", tmp_path / "r",
                 "--device", "cpu", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot be resolved" in r.stderr and "fingerprint" in r.stderr
    assert "abc123" in r.stderr  # the fingerprint itself is shown
    make_prompt_cache(tmp_path / "p", n=16)
    from safetensors.torch import save_file

    from xmic.towers.encoders import load_clip
    other = load_clip(str(TINY), "random", "cpu", "fp32", seed=7).model
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "w.safetensors"))
    r = run_xmic("train", "--cache", tmp_path / "p", "--method", "coop", "--out", tmp_path / "r2",
                 "--device", "cpu", "--weights", tmp_path / "w.safetensors", check=False)
    assert r.returncode == 2 and "is not the one that made the vocabulary" in r.stderr
    assert "weights_sha256" in r.stderr and not (tmp_path / "r2" / "last.pt").exists()
    # the tower named on the command line is recorded (model.text_tower) and is not the run:
    # the run resumes without it, and evaluation can name it again
    run_xmic("train", "--cache", tmp_path / "p", "--method", "coop", "--out", tmp_path / "ok",
             "--device", "cpu", "--epochs", "1", "--set", "batch_size=8", "--model", TINY,
             "--weights", "random")
    recorded = yaml.safe_load((tmp_path / "ok" / "config.yaml").read_text())["model"]
    assert recorded["text_tower"] == {"model": str(TINY), "weights": "random"}
    assert "xmic" not in recorded and recorded["prompt"]["context"] == 16
    run_xmic("train", "--cache", tmp_path / "p", "--method", "coop", "--out", tmp_path / "ok",
             "--device", "cpu", "--epochs", "2", "--set", "batch_size=8", "--resume")
    run_xmic("evaluate", tmp_path / "ok", "--cache", tmp_path / "p", "--split", "train",
             "--device", "cpu", "--model", TINY, "--weights", "random")
    r = run_xmic("train", "--cache", tmp_path / "p", "--method", "xmic", "--out", tmp_path / "r3",
                 "--weights", tmp_path / "w.safetensors", check=False)
    assert r.returncode == 2 and "name the text tower of coop/cocoop" in r.stderr
    r = run_xmic("train", "--cache", tmp_path / "p", "--method", "cocoop", "--out", tmp_path / "r4",
                 "--set", "model.prompt_context=80", check=False)
    assert r.returncode == 2 and "outside the allowed range [1, 72]" in r.stderr  # before allocating
    with pytest.raises(TextTowerError, match="timm model has no text tower"):
        load_text_tower({"model": {"name": "timm:vit_small"}}, {}, "cpu")


def test_cli_train_and_evaluate_on_another_caches_class_names(tmp_path, tower):
    src_names, tgt_names = NOUNS[:4], ["plate", "tap", "bowl", "kettle knife", "fork"]
    make_prompt_cache(tmp_path / "epic", n=32, names=src_names)
    make_prompt_cache(tmp_path / "ego4d", n=24, names=tgt_names, dataset="ego4d",
                      splits=("val",), seed=3)
    run = tmp_path / "run"
    run_xmic("train", "--cache", tmp_path / "epic", "--method", "cocoop", "--out", run,
             "--epochs", "1", "--device", "cpu", "--set", "batch_size=8", "--set",
             "model.text_batch=16")
    r = run_xmic("evaluate", run, "--cache", tmp_path / "ego4d", "--split", "val", "--json")
    m = json.loads(r.stdout)
    assert m["method"] == "cocoop" and m["n"] == 24 and m["source_dataset"] == "epic"
    pred = pq.read_table(run / "eval" / "ego4d-val" / "predictions.parquet").to_pydict()
    assert set(sum(pred["top5_classes"], [])) == set(tgt_names)
    # the scores are the target's names through the learned context
    model, cfg, _ = load_run(run)
    cache_bank = load_bank(Cache.open(tmp_path / "ego4d"), "val", ["hand_crop"], "noun", 5,
                           torch.device("cpu"))
    ids = prompt_token_ids(tower, tgt_names, 16)
    want = predict_logits(model, cache_bank, ids, cfg)
    got = torch.tensor(pred["top5_scores"])
    assert torch.allclose(got[:, 0], want.max(1).values, atol=1e-3)


def _paper_caches(tmp_path, make):
    make(tmp_path / "epic", n=24, splits=("train", "validation"))
    make(tmp_path / "ego4d", n=24, splits=("train", "val"), dataset="ego4d", seed=2)
    return ["--cache", f"epic={tmp_path / 'epic'}", "--cache", f"ego4d={tmp_path / 'ego4d'}"]


def test_paper_main_gains_the_prompt_rows_only_when_the_tower_loads(tmp_path):
    caches = _paper_caches(tmp_path / "plain", make_train_cache)
    r = run_xmic("grid", "plan", tmp_path / "g1", "--recipe", "paper-main", *caches)
    assert "runs" in r.stdout and "coop" not in r.stdout.split("\n")[0]
    # 2 sources x 2 labels x (coop, cocoop, and zeroshot-ensemble: no noun.kinetics here),
    # one line per reason: the tower that cannot load, and the ensemble's vocabulary
    skipped = json.loads((tmp_path / "g1" / "grid.json").read_text())["skipped"]
    assert len(skipped) == 12 and sum("zeroshot-ensemble: no vocabulary" in x
                                      for x in skipped) == 4
    assert r.stdout.count("not planned:") == 2  # both caches share one tower (one reason)
    assert "cannot be resolved" in r.stdout
    grid = json.loads((tmp_path / "g1" / "grid.json").read_text())
    assert len(grid["runs"]) == 2 * 2 * 4 * 3
    caches = _paper_caches(tmp_path / "towers", make_prompt_cache)
    r = run_xmic("grid", "plan", tmp_path / "g2", "--recipe", "paper-main", *caches)
    assert r.stdout.count("not planned") == 1 and "coop, cocoop" in r.stdout  # the ensemble
    grid = json.loads((tmp_path / "g2" / "grid.json").read_text())
    assert len(grid["runs"]) == 2 * 2 * 6 * 3
    assert {t["dataset"] for r in grid["runs"] if r["method"] == "cocoop" for t in r["targets"]} \
        == {"epic", "ego4d"}


def test_a_recipe_naming_coop_needs_the_tower_and_a_grid_runs_it(tmp_path, monkeypatch):
    import functools
    import pickle

    from xmic.grid.runner import grid_task
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sources: {epic: train}\ntargets: {epic: validation, ego4d: val}\n"
                      "labels: [noun]\nmethods: {coop: {}}\nseeds: [0, 1]\n"
                      "train: {epochs: 1, batch_size: 8, device: cpu}\n")
    plain = _paper_caches(tmp_path / "plain", make_train_cache)
    r = run_xmic("grid", "plan", tmp_path / "g0", "--recipe", recipe, *plain, check=False)
    assert r.returncode == 2 and "method 'coop'" in r.stderr and "cannot be resolved" in r.stderr
    caches = _paper_caches(tmp_path / "towers", make_prompt_cache)
    run_xmic("grid", "plan", tmp_path / "g", "--recipe", recipe, *caches, "--seeds", "0")
    run_xmic("grid", "run", tmp_path / "g")                   # the runner loads the tower
    run = tmp_path / "g" / "runs" / "epic-noun-coop-seed0"
    assert (run / "finished.json").exists()
    m = json.loads((run / "eval" / "ego4d-val" / "metrics.json").read_text())
    assert m["method"] == "coop" and m["dataset"] == "ego4d"
    run_xmic("grid", "plan", tmp_path / "g2", "--recipe", recipe, *caches)
    from xmic.grid import runner
    from xmic.towers import text_tower
    calls = []

    def counting(*a):
        calls.append(a)
        return load_text_tower(*a)
    monkeypatch.setattr(text_tower, "load_text_tower", counting)
    text_tower.text_tower.clear()  # the towers this process loaded are kept by identity
    out = runner.run_inprocess(tmp_path / "g2", echo=lambda *a: None)
    assert out["states"] == {"epic-noun-coop-seed0": "done", "epic-noun-coop-seed1": "done"}
    assert out["tower_loads"] == len(calls) == 1  # 2 trainings and 4 scorings share one tower
    assert len(text_tower.text_tower) == 1
    # a Slurm or local task is a plain function and its grid folder
    task = pickle.loads(pickle.dumps(functools.partial(grid_task, "g")))
    assert task.func is grid_task and task.args == ("g",)

"""What a run, a checkpoint, a metrics file or a config says is checked when it is read: a
checkpoint with NaN weights, a missing config, extra or mis-shaped tensors; a diverged held-out
loss; metrics that are strings or NaN; sizes past their bounds; a damaged index; a full disk in a
grid. Each is one line naming the file (exit 2, or exit 1 for a diverged run)."""
from __future__ import annotations

import errno
import json
import math

import pytest
import torch
from click.testing import CliRunner

from faults.test_user_mistakes import one_line_error
from train_data import make_train_cache
from xmic.cache import Cache
from xmic.cli import main

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    cache = make_train_cache(base / "c", n=24, splits=("train", "validation"))
    r = CliRunner().invoke(main, ["train", "--cache", str(cache.root), "--label", "noun", "--out",
                                  str(base / "run"), "--epochs", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return cache.root, base / "run"


def tampered(trained, tmp_path, change) -> str:
    import shutil
    cache, run = trained
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    ck = torch.load(bad / "checkpoint.pt", weights_only=True)
    change(ck)
    torch.save(ck, bad / "checkpoint.pt")
    return str(bad)


@pytest.mark.parametrize("change, words", [
    (lambda ck: ck["model"].__setitem__(next(iter(ck["model"])),
                                        ck["model"][next(iter(ck["model"]))] * float("nan")),
     "hold NaN or infinite values"),
    (lambda ck: ck.pop("config"), "'config' is missing"),
    (lambda ck: ck["model"].__setitem__("extra.weight", torch.zeros(2)), "do not fit the model"),
    (lambda ck: ck["model"].__setitem__("logit_scale", torch.zeros(3, 3)), "do not fit the model"),
    (lambda ck: ck.__setitem__("model", [1, 2]), "'model' is list, dict expected"),
    (lambda ck: ck["config"].__setitem__("epochs", "many"), "expected an integer"),
])
def test_a_checkpoint_is_checked_when_it_is_loaded(trained, tmp_path, change, words):
    cache, _ = trained
    bad = tampered(trained, tmp_path, change)
    one_line_error("evaluate", "run", bad, "--cache", cache, "--split", "validation",
                   "--device", "cpu", words=words)
    assert not (tmp_path / "run" / "eval").exists()


def test_a_diverged_held_out_loss_fails_the_run_and_metrics_stay_json(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=24)
    r = CliRunner().invoke(main, ["train", "--cache", str(cache.root), "--label", "noun",
                                  "--out", str(tmp_path / "run"), "--epochs", "2", "--device",
                                  "cpu", "--set", "optim.lr=1e30", "--set",
                                  "optim.warmup_epochs=0"])
    assert r.exit_code == 1 and "training diverged at epoch 1" in r.output, r.output
    assert "Traceback" not in r.output
    metrics = tmp_path / "run" / "metrics.jsonl"
    for line in (metrics.read_text().splitlines() if metrics.exists() else []):
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))


def test_metrics_lines_are_valid_json_whatever_the_numbers():
    from xmic.train.run_record import json_line
    row = json.loads(json_line({"epoch": 3, "heldout_loss": math.nan, "train_loss": math.inf,
                                "lr": 1e-4}))
    assert row == {"epoch": 3, "heldout_loss": None, "train_loss": None, "lr": 1e-4}


@pytest.mark.parametrize("value", ['"16.7"', "NaN", "Infinity", "-3", "1e9", "true"])
def test_grid_table_counts_a_bad_score_missing(tmp_path, value):
    from test_grid_trust import tiny_grid
    g = tiny_grid(tmp_path)
    m = next((g / "runs").rglob("metrics.json"))
    text = m.read_text()
    data = json.loads(text)
    m.write_text(text.replace(json.dumps(data["top1"]), value, 1))
    r = CliRunner().invoke(main, ["grid", "table", str(g)])
    assert r.exit_code == 0 and "1 planned score(s) missing" in r.output, r.output


def test_sizes_past_their_bounds_are_refused_when_read(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=8)
    for setting, words in (("model.prompt_context=1000000000", "model.prompt.context: 1000000000 is "
                            "outside the allowed range [1, 72]"),
                           ("seed=100000000000000000000000", "seed: 100000000000000000000000 is "
                            "outside the allowed range"),
                           ("batch_size=10000000000", "batch_size: 10000000000 is outside"),
                           ("model.heads=100000", "heads: 100000 is outside")):
        one_line_error("train", "--cache", cache.root, "--method", "cocoop", "--out",
                       tmp_path / "r", "--set", setting, words=words)
    (tmp_path / "none.csv").write_text("")
    one_line_error("extract", "plan", tmp_path / "e", "--dataset", "epic", "--annotations",
                   tmp_path / "none.csv", "--root", tmp_path, "--split", "train",
                   "--shard-size", "0", words="shard_segments: 0 is outside the allowed range")


def test_a_garbage_index_is_rebuilt(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=12)
    before = cache.index().to_pylist()
    (cache.root / "index.parquet").write_bytes(b"PAR1 not parquet at all PAR1")
    assert Cache.open(cache.root).index().to_pylist() == before
    r = CliRunner().invoke(main, ["cache", "info", str(cache.root)])
    assert r.exit_code == 0, r.output


def test_a_full_disk_in_a_grid_is_one_line(tmp_path, monkeypatch):
    from test_grid_trust import tiny_grid
    from xmic.grid import runner
    from xmic.train import run_record
    g = tiny_grid(tmp_path, run=False)

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(run_record, "save_checkpoint", full)
    monkeypatch.setattr(runner, "write_json_atomic", full)  # not even failed.json fits
    r = CliRunner().invoke(main, ["grid", "run", str(g)])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and "last.pt" in lines[0], r.output
    assert "free space, then run the same command again" in lines[0]


def test_recorded_widths_allocate_nothing_before_the_weights_fit(trained, tmp_path):
    """A checkpoint of a few KB claiming widths of 8192 is refused on its tensors' shapes
    (checked against the model built on the meta device) before any model is allocated."""
    import resource
    from xmic.train.checkpoint import CheckpointError
    from xmic.train.inference import load_run

    def wide(ck):
        ck["dims"]["text"] = 8192
        if isinstance(ck["dims"].get("cond"), int):
            ck["dims"]["cond"] = 8192
    bad = tampered(trained, tmp_path, wide)
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="do not fit the model its config and widths describe"):
        load_run(bad)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024 < 256

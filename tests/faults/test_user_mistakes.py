"""User mistakes through the CLI, in-process (click's runner): each is one line on stderr, exit 2,
no traceback, and nothing lost or half-made: an output path that is a file, a cache converted
onto or into itself, an empty embeddings file, a frame number too large for the index, an id that
would lead out of --root, a garbage HDF5 shard met while training, a width-0 pickle."""
from __future__ import annotations

import csv
import os
import pickle
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import fill_cache
from extract_data import make_ego4d, make_epic
from train_data import make_train_cache, vocab_fp
from xmic.cache import Cache
from xmic.cache.vocab import add_vocab
from xmic.cli import main

pytestmark = pytest.mark.faults


def one_line_error(*args, words: str) -> None:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [x for x in r.output.strip().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and words in lines[0], r.output
    assert "Traceback" not in r.output


def test_output_paths_that_are_files(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    e = make_epic(tmp_path / "e", videos=("P01_01",), segs_per_video=2)
    one_line_error("extract", "plan", a_file, "--dataset", "epic", "--annotations",
                   e["annotations"], "--root", e["root"], "--boxes", e["boxes"],
                   words="is a file, not a folder")
    cache = make_train_cache(tmp_path / "c", n=12)
    one_line_error("train", "--cache", cache.root, "--label", "noun", "--out", a_file,
                   "--epochs", "1", "--device", "cpu", words="is a file; give a folder")
    one_line_error("cache", "convert", cache.root, a_file, "--to", "hdf5",
                   words="is a file, not a folder")
    assert a_file.read_text() == "keep me"


def test_an_evaluation_is_never_written_into_a_cache(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=12, splits=("train", "validation"))
    r = CliRunner().invoke(main, ["train", "--cache", str(cache.root), "--method", "zeroshot",
                                  "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    before = sorted(p.relative_to(cache.root) for p in cache.root.rglob("*"))
    one_line_error("evaluate", "run", tmp_path / "run", "--cache", cache.root, "--split",
                   "validation", "--out", cache.root / "views" / "eval", "--device", "cpu",
                   words="lies inside the cache")
    assert sorted(p.relative_to(cache.root) for p in cache.root.rglob("*")) == before
    import xmic
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        xmic.load_run(tmp_path / "run").predict(cache.root, "validation", k=0)


@pytest.mark.parametrize("where", ["itself", "inside"])
def test_convert_onto_or_into_itself(tmp_path, where):
    cache = fill_cache(tmp_path / "c", n=6)
    before = sorted(p.relative_to(cache.root) for p in cache.root.rglob("*"))
    out = cache.root if where == "itself" else cache.root / "views" / "copy"
    one_line_error("cache", "convert", cache.root, out, "--to", "hdf5",
                   words="the output lies inside the cache it converts")
    assert sorted(p.relative_to(cache.root) for p in cache.root.rglob("*")) == before


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_empty_embeddings_file(tmp_path, suffix):
    cache = make_train_cache(tmp_path / "c", n=8)
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    one_line_error("cache", "import-text", cache.root, "--name", "extra", "--classes", classes,
                   "--embeddings", empty, words=str(empty))
    assert not (cache.root / "vocab" / "extra").exists()


def test_width_zero_embeddings_and_pickles_leave_nothing(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=8)
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    np.save(tmp_path / "w0.npy", np.zeros((2, 0), np.float32))
    one_line_error("cache", "import-text", cache.root, "--name", "extra", "--classes", classes,
                   "--embeddings", tmp_path / "w0.npy", words="width 0")
    from xmic_inputs import make_xmic_inputs
    ann = make_xmic_inputs(tmp_path / "ann", "epic", splits=("train",))["splits"]["train"]
    pkl = tmp_path / "w0.pkl"
    with open(ann["hand_crop"], "rb") as f:
        ids = list(pickle.load(f))
    with open(pkl, "wb") as f:
        pickle.dump({sid: np.zeros((3, 0), np.float32) for sid in ids}, f)
    one_line_error("cache", "import", tmp_path / "new", "--dataset", "epic", "--split", "train",
                   "--annotations", ann["annotations"], "--view", f"hand_crop={pkl}",
                   words="width 0")
    assert not (tmp_path / "new").exists()  # a refused import into a new cache leaves nothing
    one_line_error("cache", "import", cache.root, "--dataset", "epic", "--split", "other",
                   "--annotations", ann["annotations"], "--view", f"extra_view={pkl}",
                   words="width 0")
    c = Cache.open(cache.root)  # an existing cache is as it was: no view, no split added
    assert "extra_view" not in c.views() and "other" not in set(c.plan()["split"].to_pylist())


def _epic_with(tmp_path, column: str, value: str):
    e = make_epic(tmp_path / "e", videos=("P01_01",), segs_per_video=3)
    with open(e["annotations"]) as f:
        rows = list(csv.reader(f))
    for col in column.split(","):
        rows[2][rows[0].index(col)] = value
    with open(e["annotations"], "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return e


def test_frame_number_too_large_for_the_index(tmp_path):
    e = _epic_with(tmp_path, "start_frame,stop_frame", str(2**64 + 5))
    one_line_error("extract", "plan", tmp_path / "c", "--dataset", "epic", "--annotations",
                   e["annotations"], "--root", e["root"], "--boxes", e["boxes"],
                   words="segment P01_01_1: start_frame")
    assert not (tmp_path / "c").exists()  # a refused plan leaves no half-made cache


@pytest.mark.parametrize("clip", ["../../outside", "/etc/passwd", "a/b"])
def test_ids_that_leave_the_media_root_are_refused_at_plan(tmp_path, clip):
    g = make_ego4d(tmp_path / "g", clips=("ok", "x"), frames=60)
    text = g["annotations"].read_text().replace('"x"', f'"{clip}"')
    g["annotations"].write_text(text)
    one_line_error("extract", "plan", tmp_path / "c", "--dataset", "ego4d", "--annotations",
                   g["annotations"], "--taxonomy", g["taxonomy"], "--root", g["root"],
                   "--split", "val", "--views", "full_frame",
                   words=f"video id {clip!r} is not a plain name inside the media root")
    assert not (tmp_path / "c").exists()


def test_garbage_hdf5_met_while_training(tmp_path):
    cache = fill_cache(tmp_path / "c", backend="hdf5", n=8, dim=16, splits=("train",))
    add_vocab(cache, "noun", [f"c{i}" for i in range(5)],
              np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32), "{}", vocab_fp())
    data = cache.root / "views" / "hand_crop" / cache.shards()[0] / "data.h5"
    size = data.stat().st_size
    os.chmod(data, 0o644)
    data.write_bytes(os.urandom(size))  # same size: only its contents are garbage
    one_line_error("train", "--cache", cache.root, "--label", "noun", "--out", tmp_path / "run",
                   "--epochs", "1", "--device", "cpu", "--set", "model.heads=1",
                   words="cannot read shard data")
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


def test_bad_shard_ranges(tmp_path):
    for bad in ("0-x", "3-1", "-2", "a"):
        one_line_error("extract", "run", tmp_path, "--shards", bad, "--weights", "random",
                       words=f"--shards {bad!r}")
    cache = fill_cache(tmp_path / "c")  # 6 shards: a range past them is refused before it is built
    one_line_error("extract", "run", cache.root, "--shards", "0-30000000", "--weights", "random",
                   words="shard 30000000 is outside the plan's 6 shard(s) (0-5)")


@pytest.mark.parametrize("args, words", [
    (["extract", "text", "C", "--set", "prompt='{x}'"], "prompt '{x}' must hold '{}'"),
    (["extract", "text", "C", "--set", "zeroshot_prompt='{}{}'"], "prompt '{}{}' must hold"),
    (["extract", "text", "C", "--set", "prompt='{0.__class__}'"], "must hold '{}' (the class name) exactly"),
    (["extract", "run", "C", "--set", "rename=[full_frame=a, hand_crop=a]"],
     "two views would be written under one name"),
    (["extract", "run", "C", "--set", "rename=[full_frame=hand_crop]"],
     "two views would be written under one name"),
    (["train", "--cache", "C", "--out", "R", "--set", "log.wandb_project=a/b"],
     "log.wandb_project 'a/b' must be a plain name"),
    (["train", "--cache", "C", "--out", "R", "--set", "optim.warmup_start_lr=1e300"],
     "must be at most lr"),
    (["train", "--cache", "C", "--out", "R", "--seeds", "1,,x"], "--seeds '1,,x': expected integers"),
])
def test_settings_that_cannot_work_are_one_line(tmp_path, args, words):
    cache = fill_cache(tmp_path / "c")
    one_line_error(*[{"C": cache.root, "R": tmp_path / "run"}.get(a, a) for a in args], words=words)
    assert not (tmp_path / "run").exists()


def test_a_vocabulary_prompt_read_from_a_cache_is_checked(tmp_path):
    """vocab.json is a file of the cache: its prompt becomes a format string, so a template
    that reads attributes or names other fields is refused when it is loaded."""
    import json as _json
    from xmic.cache.paths import CacheError
    from xmic.cache.vocab import load_vocab
    cache = make_train_cache(tmp_path / "c", n=8)
    path = cache.root / "vocab" / "noun" / "vocab.json"
    meta = _json.loads(path.read_text())
    meta["prompt"] = "{0.__class__.__init__.__globals__}"
    path.write_text(_json.dumps(meta))
    with pytest.raises(CacheError, match=r"vocab.json: prompt .* must hold '\{\}'"):
        load_vocab(Cache.open(cache.root), "noun")


def test_evaluate_table_leaves_out_what_is_not_an_evaluation(tmp_path):
    """The checks `grid table` applies: an unreadable metrics file or one whose score is not a
    number in [0, 100] is left out and named, never a traceback or a NaN in the table."""
    import json as _json
    good = {"method": "xmic", "source_dataset": "epic", "dataset": "epic", "label": "noun",
            "in_dataset": True, "top1": 50.0, "top5": 90.0, "mean_class_acc": 40.0}
    for name, body in (("good", _json.dumps(good)), ("broken", "{not json"),
                       ("nan", _json.dumps({**good, "top1": "NaN"})),
                       ("huge", _json.dumps({**good, "top5": 1e9}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(body)
    r = CliRunner().invoke(main, ["evaluate", "table", str(tmp_path)])
    assert r.exit_code == 0 and "| xmic |" in r.output and "50.0" in r.output, r.output
    assert r.output.count("left out") == 3 and "Traceback" not in r.output
    assert "broken/metrics.json left out: unreadable" in r.output

"""The CLI surface: help lists the stage groups; the demo runs end to end from a fresh folder."""
from __future__ import annotations

import json
import math

import pytest

from helpers import run_xmic
from xmic.cache import Cache
from xmic.cache.verify import verify


def test_help_lists_stage_groups():
    out = run_xmic("--help").stdout
    for group in ("cache", "extract", "slurm", "train", "evaluate", "demo"):
        assert f"  {group} " in out
    out = run_xmic("cache", "--help").stdout
    for cmd in ("info", "verify", "convert", "import", "import-text"):
        assert f"  {cmd} " in out


def test_demo_end_to_end(demo_out):
    out, stdout = demo_out
    assert "weights are RANDOM" in stdout and "verify --deep: both caches ok" in stdout
    assert "| xmic | epic | 1 |" in stdout and "| zeroshot | epic | 1 |" in stdout
    for name in ("epic", "ego4d"):
        c = Cache.open(out / "caches" / name)
        assert verify(c, deep=True) == [] and set(c.views()) == {"full_frame", "hand_crop"}
    assert (out / "report.md").read_text().startswith("# xmic demo report")
    assert "| coop | epic | 1 |" in stdout
    for method in ("xmic", "coop", "zeroshot"):
        for ev in ("epic-validation", "ego4d-val"):
            assert (out / "runs" / method / "eval" / ev / "metrics.json").exists()


def test_predict(demo_out, tmp_path):
    out, _ = demo_out
    clip = out / "world" / "ego4d" / "clips" / "demo000.mp4"
    cp = run_xmic("predict", clip, "--run", out / "runs" / "xmic", "--classes",
                  "knife,chopping board,door,phone", "--boxes", out / "world" / "ego4d" / "boxes.csv",
                  "--start", "0", "--end", "4", "--top-k", "3", "--json")
    r = json.loads(cp.stdout)
    from xmic.cache.sampling import frames_to_store  # 4 s at 10 fps: frames [0, 40)
    assert r["frames"] == len(frames_to_store("epic", 0, 40)) and len(r["top"]) == 3
    assert {t["class"] for t in r["top"]} <= {"knife", "chopping board", "door", "phone"}
    assert any("RANDOM" in n for n in r["notes"])
    # probabilities are the softmax over all 4 classes: ordered, ratios exp(score difference)
    p, s = [t["prob"] for t in r["top"]], [t["score"] for t in r["top"]]
    assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    for i in range(1, 3):
        assert p[i] / p[0] == pytest.approx(math.exp(s[i] - s[0]), rel=1e-5)
    cp = run_xmic("predict", clip, "--run", out / "runs" / "coop", "--classes", "knife,door,cup",
                  "--json")  # the learned context before these names, through the run's tower
    assert {t["class"] for t in json.loads(cp.stdout)["top"]} == {"knife", "door", "cup"}
    frames = out / "world" / "epic" / "P01" / "rgb_frames" / "P01_01"
    cp = run_xmic("predict", frames, "--run", out / "runs" / "zeroshot", "--vocab",
                  f"{out / 'caches' / 'ego4d'}:noun")
    assert "note: no --boxes: hand crops are the full frames" in cp.stdout and "1. " in cp.stdout
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    for args, msg in (((tmp_path / "bad.mp4", "--classes", "knife"), "bad.mp4"),
                      ((clip, "--classes", " , "), "no class name"),
                      ((clip,), "exactly one of --classes"),
                      ((clip, "--classes", "knife", "--model", "timm:test_vit", "--weights", "random"),
                       "encoder differs")):
        cp = run_xmic("predict", args[0], "--run", out / "runs" / "xmic", *args[1:], check=False)
        assert cp.returncode == 2 and msg in cp.stderr, (args, cp.stderr)


def test_batch_predict_over_clips_and_a_list(demo_out, tmp_path):
    """Several clips, or a CSV of clips with windows: the run and encoder loaded once, one row
    per clip, equal to predicting each clip alone."""
    import pandas as pd
    out, _ = demo_out
    clips = sorted((out / "world" / "ego4d" / "clips").glob("*.mp4"))[:2]
    args = ["--run", out / "runs" / "xmic", "--classes", "knife,chopping board,door,phone",
            "--top-k", "2"]
    (tmp_path / "clips.csv").write_text("clip,start,end\n" + "".join(
        f"{c},0,3\n" for c in clips))
    cp = run_xmic("predict", "--list", tmp_path / "clips.csv", *args, "--out", tmp_path / "p.csv")
    assert "wrote" in cp.stdout and "2 clip(s)" in cp.stdout
    df = pd.read_csv(tmp_path / "p.csv")
    assert list(df.columns[:6]) == ["clip", "start", "end", "frames", "class_1", "score_1"]
    one = json.loads(run_xmic("predict", clips[1], *args, "--start", "0", "--end", "3",
                              "--json").stdout)
    assert df.loc[1, "class_1"] == one["top"][0]["class"]
    assert df.loc[1, "score_1"] == pytest.approx(one["top"][0]["score"], rel=1e-5)
    many = json.loads(run_xmic("predict", *clips, *args, "--json").stdout)
    assert [m["clip"] for m in many] == [str(c) for c in clips]
    (tmp_path / "bad.csv").write_text("path\nx.mp4\n")
    cp = run_xmic("predict", "--list", tmp_path / "bad.csv", *args, check=False)
    assert cp.returncode == 2 and "needs a 'clip' column" in cp.stderr
    for times in ("nan,3", "0,inf", "-1,3"):
        (tmp_path / "nan.csv").write_text(f"clip,start,end\n{clips[0]},{times}\n")
        cp = run_xmic("predict", "--list", tmp_path / "nan.csv", *args, check=False)
        assert cp.returncode == 2 and "row 2: start, end and fps must be finite numbers" in cp.stderr
    # a missing clip fails alone: the others are predicted and written, exit 1 names it
    (tmp_path / "gap.csv").write_text(f"clip\n{clips[0]}\n{tmp_path / 'gone.mp4'}\n{clips[1]}\n")
    cp = run_xmic("predict", "--list", tmp_path / "gap.csv", *args, "--out", tmp_path / "g.csv",
                  check=False)
    assert cp.returncode == 1 and "gone.mp4: FAILED" in cp.stderr, cp.stderr
    assert "1 of 3 clip(s) failed" in cp.stderr
    g = pd.read_csv(tmp_path / "g.csv")  # every clip has its row: the failed one its reason
    assert list(g["clip"]) == [str(clips[0]), str(tmp_path / "gone.mp4"), str(clips[1])]
    assert g["error"].isna().tolist() == [True, False, True] and "gone.mp4" in g.loc[1, "error"]
    assert g["class_1"].notna().tolist() == [True, False, True]


def test_predict_reads_frame_folders_from_any_first_frame_and_a_clips_own_pickle(demo_out,
                                                                                  tmp_path):
    """A frame folder numbered from 101 scores as the same frames numbered from 1; a clip's
    own EPIC-100 detection pickle crops its hands; the summary says which frames were used."""
    import shutil
    out, _ = demo_out
    src = out / "world" / "epic" / "P01" / "rgb_frames" / "P01_01"
    for name, shift in (("from1", 0), ("from101", 100)):
        (tmp_path / name).mkdir()
        for i in range(1, 61):
            shutil.copy(src / f"frame_{i:010d}.jpg", tmp_path / name / f"frame_{i + shift:010d}.jpg")
    args = ["--run", out / "runs" / "xmic", "--classes", "knife,chopping board,door,phone"]
    a, b = (json.loads(run_xmic("predict", tmp_path / n, *args, "--json").stdout)
            for n in ("from1", "from101"))
    assert a["top"] == b["top"] and a["span"] == [1, 60] and b["span"] == [101, 160]
    line = run_xmic("predict", tmp_path / "from101", *args).stdout
    assert "16 bin-centre frames of frames 101..160 scored" in line, line
    own = out / "world" / "epic" / "detections" / "P01_01.pkl"
    c = json.loads(run_xmic("predict", tmp_path / "from1", *args, "--boxes", own, "--json").stdout)
    assert "no --boxes" not in " ".join(c["notes"]) and c["top"] != a["top"]


def test_predict_uses_the_crop_thresholds_of_the_runs_cache(demo_out, tmp_path, monkeypatch):
    import shutil

    import torch

    from xmic.extract import clip_embed
    out, _ = demo_out
    run = tmp_path / "run"
    shutil.copytree(out / "runs" / "xmic", run)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    ck["fingerprints"]["views"]["hand_crop"]["crop"].update(hand_score=0.5, object_score=0.2,
                                                            min_box_px=3.0)
    torch.save(ck, run / "checkpoint.pt")
    seen = {}
    real = clip_embed.embed_clip

    def spy(path, enc, views, span, boxes, settings):
        seen.update(vars(settings))
        return real(path, enc, views, span, boxes, settings)
    monkeypatch.setattr(clip_embed, "embed_clip", spy)
    clip = out / "world" / "ego4d" / "clips" / "demo000.mp4"
    run_xmic("predict", clip, "--run", run, "--classes", "knife,door", "--boxes",
             out / "world" / "ego4d" / "boxes.csv", "--start", "0", "--end", "2")
    assert (seen["hand_score"], seen["object_score"], seen["min_box_px"]) == (0.5, 0.2, 3.0)


def test_convert_cli(small_cache, tmp_path):
    cp = run_xmic("cache", "convert", small_cache.root, tmp_path / "h5", "--to", "hdf5")
    assert "verify ok" in cp.stdout
    assert Cache.open(tmp_path / "h5").backend == "hdf5"


def test_predict_on_a_frame_folder_with_a_decompression_bomb_is_one_line(demo_out, tmp_path):
    import shutil

    from test_extract import declare_jpeg_size
    out, _ = demo_out
    src = next((out / "world" / "epic" / "P01" / "rgb_frames").iterdir())
    clip = tmp_path / "clip"
    shutil.copytree(src, clip)
    for frame in clip.iterdir():  # every frame, whichever the sampling reads first
        frame.write_bytes(declare_jpeg_size(frame.read_bytes(), 65500, 65500))
    cp = run_xmic("predict", clip, "--run", out / "runs" / "xmic", "--classes", "knife,door",
                  check=False)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr, cp.stderr
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not decoded" in lines[0] and "decompression bomb" in lines[0]


def test_a_copied_demo_folder_runs_again(demo_out, tmp_path):
    """`cp -r demo-out elsewhere; xmic demo --out elsewhere`: its caches were planned from the
    old folder's world, and are redone from the new one."""
    import shutil
    out, _ = demo_out
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cp = run_xmic("demo", "--out", copy, "--epochs", "1", "--device", "cpu")
    assert "report:" in cp.stdout and (copy / "report.md").exists()
    from xmic.cache import Cache
    c = Cache.open(copy / "caches" / "epic")
    assert len(c.committed("hand_crop")) == len(c.shards())


def test_a_checkpoints_recorded_prompt_is_checked_before_it_formats_names(demo_out, tmp_path):
    import shutil
    import torch
    out, _ = demo_out
    run = tmp_path / "run"
    shutil.copytree(out / "runs" / "xmic", run)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    ck["fingerprints"]["vocab"]["prompt"] = "{0.__class__.__init__.__globals__}"
    torch.save(ck, run / "checkpoint.pt")
    clip = out / "world" / "ego4d" / "clips" / "demo000.mp4"
    cp = run_xmic("predict", clip, "--run", run, "--classes", "knife,door", check=False)
    assert cp.returncode == 2 and "the run's recorded vocabulary: prompt" in cp.stderr, cp.stderr


def test_side_files_are_offered_from_the_dataset_table(tmp_path):
    """Every dataset's side files are options of `extract plan` and `cache import`, with the
    record's help; a side file of another dataset is refused in one line naming what it takes."""
    from xmic.cache.datasets import DATASETS
    side = [(d, f) for d in DATASETS.values() for f in d.side_files]
    assert side
    for cmd in (["extract", "plan"], ["cache", "import"]):
        out = " ".join(run_xmic(*cmd, "--help").stdout.split())
        for d, f in side:
            assert f"--{f.name.replace('_', '-')}" in out and " ".join(f.help.split()) in out
    ann = tmp_path / "ann.csv"
    ann.write_text("video_id\n")
    r = run_xmic("extract", "plan", tmp_path / "c", "--dataset", "egtea", "--annotations", ann,
                 "--root", tmp_path, "--views", "full_frame", "--taxonomy", ann, check=False)
    assert r.returncode == 2, r.stderr
    assert "--taxonomy is not a file of dataset egtea; it takes none" in r.stderr, r.stderr
    assert not (tmp_path / "c").exists()
    r = run_xmic("extract", "plan", tmp_path / "c", "--dataset", "epic", "--annotations", ann,
                 "--root", tmp_path, "--views", "full_frame", "--taxonomy", ann, check=False)
    assert "it takes --noun-classes, --verb-classes, --video-info" in r.stderr, r.stderr


def test_a_prompt_ensemble_vocabulary_is_open_clips_and_scores_zero_shot(demo_out, tmp_path):
    """`extract text --templates`: per class the normalised mean of the templates' normalised
    embeddings, equal to open_clip's build_zero_shot_classifier on the same tower and
    templates, recorded with its templates; a zero-shot run reads it by name."""
    import shutil

    import numpy as np
    import torch
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    from xmic.cache.vocab import load_vocab
    from xmic.extract.templates import EGOCENTRIC, KINETICS
    from xmic.extract.vocabularies import ensemble_text, image_model_settings
    from xmic.towers.encoders import TINY_CONFIG, load_clip
    out, _ = demo_out
    cache = tmp_path / "epic"
    shutil.copytree(out / "caches" / "epic", cache)
    said = run_xmic("extract", "text", cache, "--templates", "ego", "--vocab", "noun",
                    "--device", "cpu").stdout
    assert "noun.ego (" in said
    v = load_vocab(Cache.open(cache), "noun.ego")
    assert v.fingerprint["templates"] == list(EGOCENTRIC) and v.source["templates"] == "ego"
    seed = image_model_settings(cache).get("seed", 0)
    enc = load_clip(str(TINY_CONFIG), "random", "cpu", "fp32", seed)
    with torch.no_grad():
        ref = build_zero_shot_classifier(enc.model, enc.tokenizer, v.names, list(EGOCENTRIC),
                                         num_classes_per_batch=None).T.numpy()       # [C, D]
    assert np.allclose(v.embeddings, ref, atol=1e-5)
    assert np.allclose(ensemble_text(enc, v.names[:3], KINETICS),
                       build_zero_shot_classifier(enc.model, enc.tokenizer, v.names[:3],
                                                  list(KINETICS)).T.numpy(), atol=1e-5)
    run_xmic("train", "--cache", cache, "--method", "zeroshot", "--out", tmp_path / "zs",
             "--device", "cpu", "--set", "model.zeroshot_vocab={label}.ego")
    cp = run_xmic("evaluate", tmp_path / "zs", "--cache", cache, "--split", "validation",
                  "--json")
    assert '"top1"' in cp.stdout
    bad = tmp_path / "mine.txt"
    bad.write_text("a photo of a {}.\nno slot here\n")
    cp = run_xmic("extract", "text", cache, "--templates", bad, "--device", "cpu", check=False)
    assert cp.returncode == 2 and "line 2: 'no slot here' needs exactly one {}" in cp.stderr

"""The CLI surface: help lists the stage groups; the demo runs end to end from a fresh folder."""
from __future__ import annotations

import json


from conftest import run_xmic
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
    for method in ("xmic", "zeroshot"):
        for ev in ("epic-validation", "ego4d-val"):
            assert (out / "runs" / method / "eval" / ev / "metrics.json").exists()


def test_predict(demo_out, tmp_path):
    out, _ = demo_out
    clip = out / "world" / "ego4d" / "clips" / "demo000.mp4"
    cp = run_xmic("predict", clip, "--run", out / "runs" / "xmic", "--classes",
                  "knife,chopping board,door,phone", "--boxes", out / "world" / "ego4d" / "boxes.csv",
                  "--start", "0", "--end", "4", "--top-k", "3", "--json")
    r = json.loads(cp.stdout)
    assert r["frames"] == 40 and len(r["top"]) == 3
    assert {t["class"] for t in r["top"]} <= {"knife", "chopping board", "door", "phone"}
    assert abs(sum(t["prob"] for t in r["top"]) - 1) < 0.5 and any("RANDOM" in n for n in r["notes"])
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


def test_convert_cli(small_cache, tmp_path):
    cp = run_xmic("cache", "convert", small_cache.root, tmp_path / "h5", "--to", "hdf5")
    assert "verify ok" in cp.stdout
    assert Cache.open(tmp_path / "h5").backend == "hdf5"

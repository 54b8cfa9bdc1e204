"""Extraction: sampling, the crop rule, encoders (QuickGELU refusal, weight conversion), the
pipeline on real layouts (JPEG folders, mp4), determinism, resume, and bad input."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, run_xmic
from extract_data import TINY, make_ego4d, make_epic
from xmic.cache import Cache, CacheConfig, load_split
from xmic.cache.verify import verify
from xmic.extract.config import ExtractConfig
from xmic.extract.boxes.epic100 import hoa_messages
from xmic.towers.encoders import EncoderError, load_clip
from xmic.extract.pipeline import run_shards
from xmic.extract.planning import PlanError, PlanPolicy, SplitSource, plan
from xmic.extract.vocabularies import extract_text

CFG = ExtractConfig(model=str(TINY), weights="random", workers=0, batch_size=48, device="cpu")


@pytest.fixture(scope="module")
def encoder():
    return load_clip(str(TINY), "random", "cpu", "fp32", 0)


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    return make_epic(tmp_path_factory.mktemp("epic"))


def extract_epic(root, epic, encoder, allow_missing=False, **kw):
    plan(root, SplitSource("epic", epic["annotations"], epic["root"], "train", boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=4), policy=PlanPolicy(allow_missing=allow_missing))
    return run_shards(root, CFG, encoder=encoder, echo=lambda *a: None, **kw)


def test_quickgelu_refusal_and_convert_round_trip(tmp_path, encoder):
    x = torch.randn(2, 3, 32, 32)
    ts = torch.jit.trace_module(encoder.model, {"encode_image": (x,)})
    ts.save(str(tmp_path / "ViT-tiny.pt"))
    cp = run_xmic("extract", "convert-weights", tmp_path / "ViT-tiny.pt", tmp_path / "w.safetensors",
                  "--model", TINY)
    assert "tensors" in cp.stdout
    e2 = load_clip(str(TINY), str(tmp_path / "w.safetensors"))
    assert torch.allclose(e2.encode_images(x), encoder.encode_images(x), atol=1e-5)
    assert e2.identity["weights_origin"] == "openai" and len(e2.identity["weights_sha256"]) == 64
    cfg = json.loads(TINY.read_text())
    cfg["quick_gelu"] = False
    (tmp_path / "tiny-gelu.json").write_text(json.dumps(cfg))
    with pytest.raises(EncoderError, match="QuickGELU.*--model tiny-gelu-quickgelu"):
        load_clip(str(tmp_path / "tiny-gelu.json"), str(tmp_path / "w.safetensors"))
    with pytest.raises(EncoderError, match="not found.*nothing is downloaded"):
        load_clip(str(TINY), str(tmp_path / "missing.pt"))
    assert any("RANDOM WEIGHTS" in w for w in encoder.warnings)


def test_epic_pipeline_and_determinism(tmp_path, epic, encoder):
    s = extract_epic(tmp_path / "a", epic, encoder)
    assert s["shards_done"] == 2 and s["segments_failed"] == 0
    extract_text(tmp_path / "a", CFG, encoder=encoder)
    c = Cache.open(tmp_path / "a")
    assert verify(c, deep=True) == []
    d = load_split(c, ["hand_crop", "full_frame"], "train")
    fi = d.segments["frame_indices"].to_pylist()
    seg = d.segments.slice(0, 1).to_pylist()[0]  # frames [start, stop): the stop is not encoded
    from xmic.cache.sampling import frames_to_store
    assert fi[0] == frames_to_store("epic", seg["start_frame"], seg["stop_frame"], "per_bin", 4, 16)
    assert max(fi[0]) < seg["stop_frame"] and fi[0][0] == seg["start_frame"]
    assert d.views["hand_crop"].features.shape == (sum(map(len, fi)), 32)
    assert not np.array_equal(d.views["hand_crop"].features, d.views["full_frame"].features)
    fp = c.view("hand_crop")["fingerprint"]
    assert fp["crop"]["hand_score"] == 0.8 and fp["model"]["weights_sha256"] == "random-seed-0"
    assert fp["crop"]["version"] == 2  # the hand-object library's pairing rule
    stats = c.marker("hand_crop", "train-00000")["stats"]
    assert set(c.views()) == {"full_frame", "hand_crop"} and stats["frames"] == sum(map(len, fi[:4]))
    # waiting on prefetching loader workers can take no measurable time: the times are only >= 0
    assert all(isinstance(stats[k], float) and stats[k] >= 0 for k in ("decode_s", "encode_s"))
    # the same input twice gives identical bytes; a partial run then a resume equals a clean run
    extract_epic(tmp_path / "b", epic, encoder, shard_ids=[1])
    b = Cache.open(tmp_path / "b")
    assert b.shard_state("full_frame", "train-00000") == "pending"
    s = run_shards(tmp_path / "b", CFG, encoder=encoder, echo=lambda *a: None)
    assert s["shards_done"] == 1 and s["shards_skipped"] == 1
    for v in ("full_frame", "hand_crop"):
        for shard in c.shards():
            assert c.marker(v, shard)["checksum"] == b.marker(v, shard)["checksum"]
    # the trainer runs on what extraction wrote
    from xmic.config import load_config
    from xmic.train.config import TrainConfig
    from xmic.train.loop import train
    cfg = load_config(TrainConfig, None, ["device=cpu", "epochs=1", "batch_size=4", "model.heads=2",
                                          "heldout_fraction=0"])
    assert train(c.root, cfg, tmp_path / "run", echo=lambda *a: None)["epochs"] == 1


def test_ego4d_video_central_window(tmp_path, encoder):
    g = make_ego4d(tmp_path / "ego")
    plan(tmp_path / "c", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                     side_files={"taxonomy": g["taxonomy"]}), views=("full_frame",))
    assert run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)["segments_failed"] == 0
    c = Cache.open(tmp_path / "c")
    idx = c.index()
    fi = idx["frame_indices"][0].as_py()
    # the released rule over the action clip's L = 150 frames: fps L//8 = 18, mid 75, frames
    # [75 - 36, 75 + 36) of the clip (for the 8-s FHO clips this is the central 4 s)
    assert idx["start_frame"][0].as_py() == 10 and fi[0] == 10 + 39 and fi[-1] < 10 + 111
    assert len(fi) == 64  # step 72/16 = 4.5: four candidates per bin, the evaluation frame one
    sampling = c.view("full_frame")["fingerprint"]["sampling"]
    assert sampling["rule"] == "ego4d" and sampling["version"] == 2


def test_bad_inputs_fail_their_segments_only(tmp_path, encoder):
    e = make_epic(tmp_path / "e", videos=("P01_01", "P01_02", "P01_03", "P01_04"))
    media = e["root"] / "P01" / "rgb_frames"
    bomb = media / "P01_04" / "frame_0000000010.jpg"                           # 10000 x 10000
    bomb.write_bytes(declare_jpeg_size(bomb.read_bytes(), 10000, 10000))
    (media / "P01_01" / "frame_0000000010.jpg").unlink()                       # missing frame
    (media / "P01_02" / "frame_0000000040.jpg").write_bytes(b"")              # zero-byte JPEG
    with open(e["boxes"] / "P01_03.pkl", "rb") as f:                           # NaN hand box
        msgs = pickle.load(f)
    bad = hoa_messages()["Detections"]()
    bad.ParseFromString(msgs[80])
    bad.hands[0].bbox.left = float("nan")
    msgs[80] = bad.SerializeToString()
    with open(e["boxes"] / "P01_03.pkl", "wb") as f:
        pickle.dump(msgs, f)
    with pytest.raises(PlanError, match=r"(?s)P01_01: segment P01_01_0 needs frames 1\.\.30, but .*"
                                        r"P01_01 lacks 1 of them.*--allow-missing"):
        extract_epic(tmp_path / "c", e, encoder)  # the missing frame is found at plan time
    s = extract_epic(tmp_path / "c", e, encoder, allow_missing=True)
    assert s["segments_failed"] == 4 and s["shards_done"] == 3
    c = Cache.open(tmp_path / "c")  # a shard committed with failed segments is counted failed
    assert s["shards_with_failed_segments"] == sum(
        st == "failed" for v in c.views() for st in c.shard_states(v).values()) // len(c.views())
    errs = " | ".join(s["failures"])
    assert "frame_0000000010.jpg: frame 10 declares 10000x10000 pixels" in errs
    from xmic.extract.media import FrameSource
    from xmic.extract.readers import ReadError, read_jpegs
    bomb.write_bytes(declare_jpeg_size(bomb.read_bytes(), 65500, 65500))  # Pillow's own limit
    with pytest.raises(ReadError, match="frame 10 is not decoded: .*decompression bomb"):
        read_jpegs(FrameSource(bomb.parent, "jpeg", 1), [10])
    assert "frame_0000000010.jpg: frame 10 is missing" in errs
    assert "frame_0000000040.jpg: frame 40 is not a readable image" in errs
    assert "P01_03, segment P01_03_2, frame 81" in errs and "NaN" in errs
    c = Cache.open(tmp_path / "c")
    assert verify(c, deep=True) == []
    idx = c.index().to_pylist()
    assert sum(r["status"] == "failed" for r in idx) == 4 and sum(r["status"] == "ok" for r in idx) == 8
    assert all(r["full_frame__count"] == 0 for r in idx if r["status"] == "failed")


def declare_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) claiming another size; the data is unchanged."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0:
            return data[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[i + 9:]
    raise ValueError("no SOF marker")


def test_bad_videos(tmp_path, encoder):
    g = make_ego4d(tmp_path / "g", clips=("ok", "trunc", "fake"), frames=200)
    raw = (g["root"] / "trunc.mp4").read_bytes()
    (g["root"] / "trunc.mp4").write_bytes(raw[: len(raw) // 3])
    (g["root"] / "fake.mp4").write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(PlanError, match=r"(?s)2 video\(s\) with unusable frames: fake: .*fake.mp4: "
                                        r"not a readable video.*trunc: .*trunc.mp4"):
        plan(tmp_path / "c", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                         side_files={"taxonomy": g["taxonomy"]}),
             views=("full_frame",))  # found from the containers' headers, before any work
    plan(tmp_path / "c", SplitSource("ego4d", g["annotations"], g["root"], "val",
                                     side_files={"taxonomy": g["taxonomy"]}), views=("full_frame",),
         policy=PlanPolicy(allow_missing=True))
    s = run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)
    errs = " | ".join(s["failures"])
    assert "fake.mp4: cannot decode video" in errs
    assert "trunc.mp4" in errs and s["segments_failed"] == 4
    ok = [r for r in Cache.open(tmp_path / "c").index().to_pylist() if r["status"] == "ok"]
    assert {r["video_id"] for r in ok} == {"ok"}


def test_cli_extract(tmp_path, epic):
    run_xmic("extract", "plan", tmp_path / "c", "--dataset", "epic", "--annotations",
             epic["annotations"], "--root", epic["root"], "--boxes", epic["boxes"], "--shard-size", "3")
    cp = run_xmic("extract", "run", tmp_path / "c", "--model", TINY, "--weights", "random",
                  "--workers", "2", "--shards", "0-1", "--device", "cpu")
    assert "2 shard(s) extracted" in cp.stdout and "RANDOM WEIGHTS" in cp.stdout + cp.stderr
    said = cp.stdout.splitlines()  # the warning comes once, before the work
    warned = [i for i, x in enumerate(said) if "RANDOM WEIGHTS" in x]
    assert len(warned) == 1 and warned[0] < min(i for i, x in enumerate(said) if "shard " in x)
    cp = run_xmic("extract", "text", tmp_path / "c", "--model", TINY, "--weights", "random",
                  "--set", "seed=9", "--device", "cpu", check=False)  # not the views' weights
    assert cp.returncode == 2 and ("class names would be encoded by xmic-tiny-quickgelu (weights "
                                   "random-seed-9), but the image views were made by "
                                   "xmic-tiny-quickgelu (weights random-seed-0): full_frame, "
                                   "hand_crop; run `xmic extract text") in cp.stderr, cp.stderr
    cp = run_xmic("extract", "text", tmp_path / "c", "--device", "cpu")  # the views' own model
    assert "noun.photo (3 classes)" in cp.stdout
    from xmic.cache.vocab import load_vocab
    # a config shipped with xmic is recorded by name: the cache may outlive this install
    assert load_vocab(Cache.open(tmp_path / "c"), "noun").source["model"] == (
        "packaged:xmic-tiny-quickgelu.json")
    cp = run_xmic("train", "--cache", tmp_path / "c", "--method", "coop", "--out", tmp_path / "r",
                  "--epochs", "1", "--device", "cpu", "--set", "heldout_fraction=0")
    assert "selected epoch 1" in cp.stdout  # the tower extraction recorded, rebuilt for CoOp
    cp = run_xmic("extract", "run", tmp_path / "c", "--model", TINY, "--weights", "random",
                  "--set", "hand_score=0.5", "--device", "cpu", check=False)
    assert cp.returncode == 2 and "hand_score: 0.8 != 0.5" in cp.stderr


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real annotations not found at {SHARED_DATA}")
def test_plan_real_annotations(tmp_path):
    epic = SHARED_DATA / "epic-kitchens-100-annotations"
    with pytest.raises(PlanError, match=r"138 video\(s\) with unusable frames: P01_11: .*"
                                        r"P01/rgb_frames/P01_11 / .*P01_11.tar / .*not found") as e:
        plan(tmp_path / "v", SplitSource("epic", epic / "EPIC_100_validation.csv", tmp_path, "validation"),
             views=("full_frame",))  # an empty --root is refused at plan time
    # five videos named, the other 133 counted, all 138 in a file
    m = re.search(r"; and 133 more \(all 138 in (\S+\.txt)\)", str(e.value))
    assert m and str(e.value).count("not found") == 5, str(e.value)[:600]
    assert len(Path(m.group(1)).read_text().splitlines()) == 138
    s = plan(tmp_path / "v", SplitSource("epic", epic / "EPIC_100_validation.csv", tmp_path, "validation"),
             views=("full_frame",), policy=PlanPolicy(allow_missing=True))
    assert s["segments"] == 9668 and s["shards"] == 38 and len(s["missing"]) == 138
    s = plan(tmp_path / "t", SplitSource("epic", epic / "UDA_annotations" / "EPIC_100_uda_source_train.csv", tmp_path, "train",
                                         side_files={"noun_classes": epic / "EPIC_100_noun_classes.csv", "verb_classes": epic / "EPIC_100_verb_classes.csv", "video_info": epic / "EPIC_100_video_info.csv"}),
             views=("full_frame",), policy=PlanPolicy(allow_missing=True))
    assert s["segments"] == 16115
    eg = SHARED_DATA / "egtea-gaze-plus-split1-parsed"
    s = plan(tmp_path / "g", SplitSource("egtea", eg / "test_split1_parsed.csv", tmp_path, "test"),
             views=("full_frame",), policy=PlanPolicy(allow_missing=True))
    meta = json.loads((tmp_path / "g" / "extract_plan.json").read_text())
    assert s["segments"] == 2022 and len(meta["classes"]["verb"]) == 19
    assert len(meta["classes"]["noun"]) == 53
    c = Cache.open(tmp_path / "g")
    assert min(c.plan()["verb_id"].to_pylist()) == 0 and max(c.plan()["verb_id"].to_pylist()) == 18


def test_encoder_two_from_timm_as_renamed_views(tmp_path, epic, encoder):
    import timm
    from safetensors.torch import save_file
    extract_epic(tmp_path / "c", epic, encoder)
    net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "tv.safetensors"))
    cfg = ExtractConfig(model="timm:test_vit", weights=str(tmp_path / "tv.safetensors"), workers=0,
                        batch_size=64, device="cpu", rename=("full_frame=tv_full", "hand_crop=tv_hand"))
    s = run_shards(tmp_path / "c", cfg, echo=lambda *a: None)
    assert s["shards_done"] == 2 and s["segments_failed"] == 0
    c = Cache.open(tmp_path / "c")
    assert c.view("tv_hand")["dim"] == 64 and c.view("hand_crop")["dim"] == 32
    assert c.view("tv_hand")["fingerprint"]["model"]["name"] == "timm:test_vit"
    assert verify(c, deep=True) == []
    extract_text(tmp_path / "c", CFG, encoder=encoder)
    from xmic.config import load_config
    from xmic.train.config import TrainConfig
    from xmic.train.loop import train
    tc = load_config(TrainConfig, None, ["device=cpu", "epochs=1", "batch_size=4", "model.heads=2",
                                         "heldout_fraction=0", "model.conditioning_views=[tv_hand, tv_full]"])
    train(c.root, tc, tmp_path / "run", echo=lambda *a: None)
    from xmic.train.checkpoint import load_checkpoint
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["model"]["temporal_embedding"].shape == (16, 64)  # Encoder II width, not the text's
    with pytest.raises(Exception, match="no text tower"):
        extract_text(tmp_path / "c", cfg)


def test_extraction_killed_mid_run_is_redone(tmp_path, epic, encoder):
    import signal
    import subprocess
    import sys
    import time
    def args(cache):  # same shards and batches as the clean run: same float rounding
        return [sys.executable, "-m", "xmic.cli", "extract", "run", str(cache), "--model", str(TINY),
                "--weights", "random", "--workers", "0", "--device", "cpu", "--batch-size", "8"]
    for name in ("clean", "c"):
        run_xmic("extract", "plan", tmp_path / name, "--dataset", "epic", "--annotations",
                 epic["annotations"], "--root", epic["root"], "--boxes", epic["boxes"],
                 "--shard-size", "1")
    subprocess.run(args(tmp_path / "clean"), check=True, capture_output=True)
    proc = subprocess.Popen(args(tmp_path / "c"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "c" / "views" / "hand_crop" / "train-00000" / "marker.json"
    t = time.time()
    while not marker.exists() and proc.poll() is None and time.time() - t < 120:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    c = Cache.open(tmp_path / "c")
    done = len(c.committed("hand_crop"))
    assert 1 <= done and verify(c, deep=True, partial=True) == []
    subprocess.run(args(tmp_path / "c"), check=True, capture_output=True)
    c, clean = Cache.open(tmp_path / "c"), Cache.open(tmp_path / "clean")
    assert verify(c, deep=True) == []
    for v in ("full_frame", "hand_crop"):
        a = load_split(c, [v], "train").views[v].features
        b = load_split(clean, [v], "train").views[v].features
        assert a.tobytes() == b.tobytes()  # same sampled frames and embeddings as a clean run


def test_epic_mp4_layout_and_other_box_sources(tmp_path, encoder):
    """EPIC videos instead of frame folders; boxes from an X-MIC box pickle or a box table."""
    import shutil
    from extract_data import frame_image, write_mp4
    e = make_epic(tmp_path / "e", videos=("P01_01",), frames=100, segs_per_video=2)
    shutil.rmtree(e["root"] / "P01" / "rgb_frames")
    (e["root"] / "P01" / "videos").mkdir(parents=True)
    write_mp4(e["root"] / "P01" / "videos" / "P01_01.MP4", 100, 10, 0)
    boxes = {"P01_01_0": {f: (8, 4, 40, 30) for f in range(1, 101)}}
    with open(tmp_path / "boxes.pkl", "wb") as f:
        pickle.dump(boxes, f)
    (tmp_path / "boxes.csv").write_text("video_id,frame,left,top,right,bottom\n" +
                                        "".join(f"P01_01,{f},8,4,40,30\n" for f in range(1, 101)))
    out = {}
    for name, src in (("pkl", tmp_path / "boxes.pkl"), ("csv", tmp_path / "boxes.csv")):
        plan(tmp_path / name, SplitSource("epic", e["annotations"], e["root"], "train", boxes=src))
        s = run_shards(tmp_path / name, CFG, encoder=encoder, echo=lambda *a: None)
        assert s["segments_failed"] == 0, s["failures"]
        out[name] = load_split(Cache.open(tmp_path / name), ["hand_crop", "full_frame"], "train")
    fi = out["csv"].segments["frame_indices"][0].as_py()
    from xmic.cache.sampling import frames_to_store
    seg = out["csv"].segments.slice(0, 1).to_pylist()[0]
    assert fi == frames_to_store("epic", seg["start_frame"], seg["stop_frame"])  # from the MP4
    assert fi[0] == seg["start_frame"] == 1 and fi[-1] < seg["stop_frame"]
    a, b = out["pkl"].views["hand_crop"], out["csv"].views["hand_crop"]
    n0 = a.offsets[1]
    assert np.array_equal(a.features[:n0], b.features[:n0])  # same box for segment 0
    assert not np.array_equal(a.features[n0:], b.features[n0:])  # segment 1: full frame vs box
    # the crop really is the box: encode the cropped first frame directly
    im = frame_image(0, 0).crop((8, 4, 40, 30))
    want = encoder.encode_images(encoder.transform(im)[None]).numpy()[0]
    assert np.allclose(b.features[0].astype(np.float32), want, atol=2e-2)


def test_local_dir_weights(tmp_path, encoder):
    from safetensors.torch import save_file
    d = tmp_path / "tiny-local"
    d.mkdir()
    cfg = json.loads(TINY.read_text())
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()},
              str(d / "open_clip_model.safetensors"))
    e2 = load_clip("unused", f"local-dir:{d}")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(e2.encode_images(x), encoder.encode_images(x), atol=1e-5)
    assert e2.identity["quick_gelu"] is True and len(e2.identity["weights_sha256"]) == 64
    with pytest.raises(EncoderError, match="no open_clip_config.json"):
        load_clip("unused", f"local-dir:{tmp_path}")
    # another weights file that sorts first: open_clip still loads open_clip_model.safetensors,
    # and the fingerprint hashes that file, not the first name in sorted order
    other = {k: torch.zeros_like(v) for k, v in encoder.model.state_dict().items()}
    save_file(other, str(d / "a-backup.safetensors"))
    from xmic.files.atomic import sha256_file
    e3 = load_clip("unused", f"local-dir:{d}")
    assert e3.identity["weights_sha256"] == sha256_file(d / "open_clip_model.safetensors")
    save_file({k: v + 1 for k, v in encoder.model.state_dict().items()},
              str(d / "open_clip_model.safetensors"))  # changed weights: another fingerprint
    e4 = load_clip("unused", f"local-dir:{d}")
    assert e4.identity["weights_sha256"] != e3.identity["weights_sha256"]
    assert not torch.allclose(e4.encode_images(x), e3.encode_images(x))


def test_egtea_official_split_and_video_info(tmp_path):
    from xmic.cache.datasets import read_egtea
    (tmp_path / "verb_idx.txt").write_text("Take 1\nPut 2\n")
    (tmp_path / "noun_idx.txt").write_text("bowl 1\ncutting board 2\n")
    (tmp_path / "test_split1.txt").write_text(
        "OP01-R01-PastaSalad-66680-68130-F001597-F001639 7 1 2\n"
        "OP01-R01-PastaSalad-70000-71000-F001680-F001704 8 2 1\n")
    segs, classes = read_egtea(tmp_path / "test_split1.txt", "test")
    c = segs.columns
    assert classes == {"verb": ["Take", "Put"], "noun": ["bowl", "cutting board"]}
    assert c["segment_id"][0] == "OP01-R01-PastaSalad-66680-68130-F001597-F001639"
    assert (c["verb_id"], c["noun_id"], c["start_frame"]) == ([0, 1], [1, 0], [1597, 1680])
    e = make_epic(tmp_path / "e", videos=("P01_01",), frames=50, segs_per_video=1)
    info = e["annotations"].parent / "EPIC_100_video_info.csv"
    info.write_text("video_id,duration,fps,resolution\nP99_01,1.0,50.0,1x1\n")
    from xmic.cache.datasets import DatasetError
    with pytest.raises(DatasetError, match="video P01_01 is not in .*EPIC_100_video_info.csv"):
        plan(tmp_path / "c", SplitSource("epic", e["annotations"], e["root"], "train",
                                         boxes=e["boxes"]))


def test_ctrl_c_keeps_what_was_encoded(tmp_path, epic, encoder, monkeypatch):
    """Ctrl-C while shard 2 encodes: shard 1 (its commit in flight) is committed, shard 2 is
    neither committed nor recorded as failed, no claim or temporary folder is left, the error
    says what to do; the same command then completes with the bytes of a clean run."""
    from xmic.extract import pipeline
    plan(tmp_path / "c", SplitSource("epic", epic["annotations"], epic["root"], "train",
                                     boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=1))
    real, calls = pipeline.ExtractionRun.encode_shard, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(pipeline.ExtractionRun, "encode_shard", interrupted)
    with pytest.raises(pipeline.Interrupted, match=r"interrupted at shard train-00001: the 1 shard"):
        run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)
    c = Cache.open(tmp_path / "c")
    for view in ("full_frame", "hand_crop"):
        assert c.shard_state(view, "train-00000") == "done"
        assert c.shard_state(view, "train-00001") == "pending"  # not "failed"
        vdir = c.root / "views" / view
        assert not list((vdir / ".running").iterdir()) and not list((vdir / ".tmp").iterdir())
    monkeypatch.undo()
    s = run_shards(tmp_path / "c", CFG, encoder=encoder, echo=lambda *a: None)
    assert s["shards_failed"] == 0 and s["shards_skipped"] == 1
    plan(tmp_path / "clean", SplitSource("epic", epic["annotations"], epic["root"], "train",
                                         boxes=epic["boxes"]),
         cache_config=CacheConfig(shard_segments=1))
    run_shards(tmp_path / "clean", CFG, encoder=encoder, echo=lambda *a: None)
    from helpers import assert_same_features
    assert_same_features(tmp_path / "c", tmp_path / "clean")


def test_model_config_names_and_the_callers_rng(tmp_path):
    """open_clip names model configs by file name for the whole process: a second JSON with the
    same name and other content is refused, not silently used; loading a seeded random model
    leaves the caller's torch RNG as it was."""
    from xmic.towers.encoders import EncoderError, load_encoder, resolve_model
    resolve_model(str(TINY))
    other = json.loads(TINY.read_text())
    other["embed_dim"] = 2 * other["embed_dim"]
    clash = tmp_path / TINY.name
    clash.write_text(json.dumps(other))
    with pytest.raises(EncoderError, match="already knows a model .* rename the file"):
        resolve_model(str(clash))
    assert resolve_model(str(TINY))[1] == json.loads(TINY.read_text())
    torch.manual_seed(123)
    state = torch.get_rng_state()
    load_encoder(str(TINY), "random", "cpu", "fp32", seed=7)
    assert torch.equal(torch.get_rng_state(), state)

"""``decode: gpu``: JPEGs decoded and preprocessed on the encoder's device. On this CPU the
same code runs with torchvision's CPU decoder: against the Pillow path, decoding is exact and
the tensor resize differs by at most 2 levels of 255 (mean under 0.3), full frames and hand
crops alike; the pipeline marks its caches with their own fingerprint, names a frame that does
not decode, and the option is refused in one line where there is no CUDA."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run_xmic
from extract_data import TINY, make_epic
from xmic.cache import Cache, CacheConfig, load_split
from xmic.extract import pipeline
from xmic.extract.config import ExtractConfig
from xmic.extract.device_decode import DeviceDecodeError, DeviceDecoder, JpegSegment, pil_rounded
from xmic.extract.planning import SplitSource, plan
from xmic.towers.encoders import load_clip
from xmic.towers.preprocess import Preprocess

MAX_LEVELS = 2  # the largest difference seen, in levels of 255, over these sizes and crops


def photo(w: int, h: int, seed: int) -> bytes:
    """A smooth image with noise, as a JPEG: what a camera frame looks like to a resize."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([(np.sin(xx / 17) + np.cos(yy / 23)) * 60 + 128, xx * 255 / w, yy * 255 / h], -1)
    a = np.clip(a + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def segment(jpegs: list[bytes], boxes) -> JpegSegment:
    data = torch.frombuffer(bytearray(b"".join(jpegs)), dtype=torch.uint8)
    return JpegSegment(data, [len(j) for j in jpegs], [f"f{i}" for i in range(len(jpegs))],
                       list(range(len(jpegs))), {"full_frame": [None] * len(jpegs),
                                                 "hand_crop": boxes})


@pytest.mark.parametrize("size", [224, 32])
def test_device_preprocessing_matches_the_pil_path(size):
    import open_clip
    pixels = Preprocess(open_clip.image_transform(size, is_train=False))
    sizes = [(456, 256), (640, 480), (1920, 1080), (100, 180)]
    jpegs = [photo(w, h, i) for i, (w, h) in enumerate(sizes)]
    boxes = [(10.4, 20.5, 300.7, 200.2), None, (1000.5, 300.49, 1500.2, 900.8), (3.0, 5.0, 90.0, 170.0)]
    got = DeviceDecoder(pixels, "cpu")(segment(jpegs, boxes))
    worst = []
    for i, (j, box) in enumerate(zip(jpegs, boxes)):
        im = Image.open(io.BytesIO(j)).convert("RGB")
        decoded = DeviceDecoder(pixels, "cpu").decode(segment([j], [None]))[0]
        assert np.array_equal(decoded.permute(1, 2, 0).numpy(), np.asarray(im))  # exact
        for view, ref_im in (("full_frame", im), ("hand_crop", im.crop(box) if box else im)):
            ref = pixels(ref_im)
            assert got[view][i].shape == ref.shape and got[view].dtype == torch.uint8
            d = (got[view][i].int() - ref.int()).abs()
            worst.append((d.max().item(), d.float().mean().item()))
    assert max(m for m, _ in worst) <= MAX_LEVELS, worst
    assert max(a for _, a in worst) < 0.3, worst


def test_boxes_round_as_pillow_crops():
    im = Image.fromarray(np.arange(40 * 30 * 3, dtype=np.uint32).reshape(30, 40, 3).astype(np.uint8))
    for box in ((2.5, 3.5, 10.5, 20.49), (0.0, 0.4, 39.6, 29.5), (1.51, 2.49, 7.5, 8.5)):
        l, t, r, b = pil_rounded(box)
        assert np.array_equal(np.asarray(im)[t:b, l:r], np.asarray(im.crop(box)))


def test_a_geometry_without_tensor_form_has_no_device_path():
    import torchvision.transforms as T
    p = Preprocess(T.Compose([T.Resize(8, antialias=False), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]))
    assert p.device_geometry is None and "antialias" in p.device_refusal
    q = Preprocess(T.Compose([T.RandomCrop(8), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]))
    assert q.device_geometry is None and "RandomCrop" in q.device_refusal


@pytest.fixture(scope="module")
def encoder():
    return load_clip(str(TINY), "random", "cpu", "fp32", 0)


def test_pipeline_with_the_device_decoder(tmp_path, encoder, monkeypatch):
    """The device path through the whole pipeline, on the CPU (its CUDA check bypassed)."""
    e = make_epic(tmp_path / "e")
    bad = next((e["root"] / "P01" / "rgb_frames" / "P01_02").glob("frame_0000000040.jpg"))
    bad.write_bytes(bad.read_bytes()[:200])  # a JPEG cut short: its segment fails, named
    for name in ("cpu", "gpu"):
        plan(tmp_path / name, SplitSource("epic", e["annotations"], e["root"], "train",
                                          boxes=e["boxes"]),
             cache_config=CacheConfig(shard_segments=4))
    monkeypatch.setattr(pipeline, "check_device_decode", lambda *a: None)
    base = ExtractConfig(model=str(TINY), weights="random", workers=0, device="cpu",
                         batch_size=48, sampling="all")
    runs = {}
    for name in ("cpu", "gpu"):
        cfg = ExtractConfig(**{**base.__dict__, "decode": name})
        runs[name] = pipeline.run_shards(tmp_path / name, cfg, encoder=encoder, echo=lambda *a: None)
    assert runs["cpu"]["segments_failed"] == runs["gpu"]["segments_failed"] == 1
    assert any("frame_0000000040.jpg" in f and "frame 40" in f for f in runs["gpu"]["failures"])
    caches = {n: Cache.open(tmp_path / n) for n in runs}
    fp = {n: c.view("hand_crop")["fingerprint"]["preprocess"] for n, c in caches.items()}
    assert "decoder" not in fp["cpu"] and fp["gpu"]["decoder"].startswith("torchvision")
    for view in ("full_frame", "hand_crop"):
        a, b = (load_split(caches[n], [view], "train").views[view].features for n in runs)
        assert a.shape == b.shape
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.99, (view, cos.min())  # the same frames, resized a level apart
    with pytest.raises(Exception, match="fingerprint"):  # the two decoders never share a view
        pipeline.run_shards(tmp_path / "cpu", ExtractConfig(**{**base.__dict__, "decode": "gpu"}),
                            encoder=encoder, echo=lambda *a: None, redo_failed=True)


def test_decode_gpu_is_refused_in_one_line_without_cuda(tmp_path, encoder):
    e = make_epic(tmp_path / "e", videos=("P01_01",))
    plan(tmp_path / "c", SplitSource("epic", e["annotations"], e["root"], "train",
                                     boxes=e["boxes"]), cache_config=None)
    cfg = ExtractConfig(model=str(TINY), weights="random", workers=0, device="cpu", decode="gpu")
    with pytest.raises(DeviceDecodeError, match="CUDA.*--decode cpu"):
        pipeline.run_shards(tmp_path / "c", cfg, encoder=encoder, echo=lambda *a: None)
    r = run_xmic("extract", "run", tmp_path / "c", "--model", TINY, "--weights", "random",
                 "--device", "cpu", "--decode", "gpu", check=False)
    assert r.returncode not in (0, 1) and "Traceback" not in r.stderr, r.stderr
    assert "--decode gpu decodes frames on a CUDA device" in r.stderr + r.stdout
    assert len([l for l in (r.stderr + r.stdout).splitlines() if l.strip()]) == 1, r.stderr


def test_decode_gpu_refuses_a_split_of_video_files(tmp_path, encoder):
    from xmic.cache.datasets import dataset
    from xmic.extract.device_decode import check_device_decode

    class OnCuda:
        device = torch.device("cuda")
        pixels = encoder.pixels
        identity = encoder.identity
    with pytest.raises(DeviceDecodeError, match="split 'val' \\(ego4d\\) is video files"):
        check_device_decode("gpu", OnCuda(), {"val": dataset("ego4d")})
    check_device_decode("gpu", OnCuda(), {"train": dataset("epic")})
    check_device_decode("cpu", encoder, {"val": dataset("ego4d")})

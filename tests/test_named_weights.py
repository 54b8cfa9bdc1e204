"""Weights by name through open_clip's own cache, offline: a local Hugging Face hub cache laid
out as huggingface_hub lays it (models--ORG--REPO/snapshots/REV, refs/main), never a network."""
from __future__ import annotations

import pytest
import torch

from extract_data import TINY
from helpers import make_hub, run_xmic
from xmic.towers.encoders import EncoderError, load_clip


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A hub cache holding the tiny model's weights as xmic-test/tiny; offline."""
    return {"cache": tmp_path / "hub", "local": make_hub(tmp_path, monkeypatch)}


def test_hf_hub_weights_equal_the_local_file(hub, tmp_path):
    named = load_clip(str(TINY), "hf-hub:xmic-test/tiny")
    local = load_clip(str(TINY), str(hub["local"]))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(named.encode_images(x), local.encode_images(x))
    assert named.identity == local.identity  # the same bytes: the same fingerprint
    cp = run_xmic("extract", "fetch-weights", TINY, "hf-hub:xmic-test/tiny", "--out",
                  tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").read_bytes() == hub["local"].read_bytes()
    assert f"use: --model {TINY} --weights {tmp_path / 'w.safetensors'}" in cp.stdout
    cp = run_xmic("extract", "fetch-weights", TINY, "hf-hub:xmic-test/tiny", "--out",
                  tmp_path / "w.pt", check=False)
    assert cp.returncode == 2 and "name it w.safetensors" in cp.stderr


def test_uncached_offline_says_what_to_run_where(hub, tmp_path):
    cp = run_xmic("extract", "fetch-weights", "ViT-B-16-quickgelu", "openai", "--out",
                  tmp_path / "b.safetensors", check=False)
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert "HF_HUB_OFFLINE is set" in cp.stderr and str(hub["cache"]) in cp.stderr
    assert "xmic extract fetch-weights ViT-B-16-quickgelu openai --out FILE" in cp.stderr
    with pytest.raises(EncoderError, match="hf-hub:nobody/none.*does not hold them"):
        load_clip(str(TINY), "hf-hub:nobody/none")
    with pytest.raises(EncoderError, match="not a pretrained tag of xmic-tiny-quickgelu"):
        load_clip(str(TINY), "laion2b")
    with pytest.raises(EncoderError, match="trained with QuickGELU.*--model ViT-B-16-quickgelu"):
        load_clip("ViT-B-16", "openai")  # refused before anything is looked up
    assert not (tmp_path / "b.safetensors").exists()


def test_fetch_weights_checks_what_the_cache_holds(hub, tmp_path):
    """fetch-weights copies only weights that pass the checks --weights FILE gets: a hub cache
    entry that is not a state dict of the model is refused and nothing is written."""
    snap = next((hub["cache"] / "models--xmic-test--tiny" / "snapshots").iterdir())
    (snap / "open_clip_model.safetensors").write_bytes(b"\x00" * 64)  # damaged in the cache
    cp = run_xmic("extract", "fetch-weights", TINY, "hf-hub:xmic-test/tiny", "--out",
                  tmp_path / "w.safetensors", check=False)
    assert cp.returncode == 2 and "the file the Hugging Face cache holds for" in cp.stderr, cp.stderr
    assert "nothing was copied" in cp.stderr and not (tmp_path / "w.safetensors").exists()

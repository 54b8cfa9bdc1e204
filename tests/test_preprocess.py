"""The preprocessing split: uint8 geometry on the host, arithmetic on the device, bit-identical
to the tower's whole transform on the CPU, for open_clip's and timm's transforms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xmic.towers.preprocess import Preprocess


def transforms():
    import open_clip
    from timm.data import create_transform, resolve_data_config
    import timm
    yield "open_clip 224", open_clip.image_transform(224, is_train=False)
    yield "open_clip 32", open_clip.image_transform(32, is_train=False)
    net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    yield "timm test_vit", create_transform(**resolve_data_config({}, model=net))


@pytest.mark.parametrize("name,transform", list(transforms()))
def test_split_is_bit_identical_to_the_whole_transform(name, transform):
    rng = np.random.default_rng(0)
    p = Preprocess(transform)
    assert p.split, name
    for w, h in ((64, 48), (456, 256), (31, 77), (224, 224)):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        u = p(im)
        assert u.dtype == torch.uint8 and u.shape[0] == 3
        got = p.normalise(torch.stack([u, u]))[0]
        assert torch.equal(got, transform(im)), (name, w, h)


def test_a_transform_of_another_shape_is_left_whole():
    import torchvision.transforms as T
    t = T.Compose([T.Resize(16), T.ToTensor()])  # no Normalize
    p = Preprocess(t)
    im = Image.new("RGB", (20, 30), (10, 20, 30))
    assert not p.split and p(im).dtype == torch.float32
    assert torch.equal(p.normalise(p(im)[None])[0], t(im))

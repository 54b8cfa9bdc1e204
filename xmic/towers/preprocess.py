"""A tower's image preprocessing split in two: geometry on the host, arithmetic on the device.

Input: the tower's own transform (open_clip's or timm's ``Compose``: resize, centre crop, RGB,
to-tensor, normalise). Output: ``Preprocess``: ``__call__(image)`` -> the image after resize and
centre crop as a uint8 tensor [3, H, W] (what DataLoader workers hand over: 4x less than
float32), and ``normalise(x)`` -> float32 [N, 3, H, W] on ``x``'s device, computed exactly as the
transform's to-tensor (``/ 255``) and normalise (``- mean``, ``/ std``) compute it, so the
result is bit-identical to the whole transform's on the CPU (tests/test_preprocess.py). A
transform of another shape is not split: ``__call__`` then returns its float output and
``normalise`` passes it through. ``on_device(images)``: the same geometry on uint8 tensors
[3, H_i, W_i] (already RGB, on any device; the GPU decoder's output) -> uint8 [N, 3, H, W],
through torchvision's tensor resize (antialiased, the transform's interpolation) and centre
crop; ``device_geometry`` is None (and ``device_refusal`` says why) for a geometry step that
has no tensor form.
"""
from __future__ import annotations

import types

import numpy as np
import torch

TO_TENSOR = ("ToTensor", "MaybeToTensor")
ON_TENSORS = ("Resize", "CenterCrop")          # geometry steps that take tensors as they are
ALREADY_RGB = ("MaybeConvertMode", "_convert_to_rgb")  # decode_jpeg already gives RGB


class Preprocess:
    def __init__(self, transform):
        self.transform = transform
        steps = list(getattr(transform, "transforms", []))
        names = [type(t).__name__ for t in steps]
        cut = next((i for i, n in enumerate(names) if n in TO_TENSOR), None)
        tail = steps[cut + 1:] if cut is not None else []
        self.split = (cut is not None and len(tail) == 1 and type(tail[0]).__name__ == "Normalize")
        if self.split:
            import torchvision.transforms as T
            self.geometry = T.Compose(steps[:cut])
            self.mean = torch.tensor(tail[0].mean, dtype=torch.float32).view(1, 3, 1, 1)
            self.std = torch.tensor(tail[0].std, dtype=torch.float32).view(1, 3, 1, 1)
            self._on: dict = {}
            self.device_geometry, self.device_refusal = _tensor_steps(steps[:cut])
        else:
            self.device_geometry, self.device_refusal = None, "its transform is not split"

    def __call__(self, image) -> torch.Tensor:
        """A PIL image -> uint8 [3, H, W] (split) or the transform's float [3, H, W]."""
        if not self.split:
            return self.transform(image)
        a = np.asarray(self.geometry(image), dtype=np.uint8)                 # [H, W, 3]
        return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> float32, normalised, on x's device (float input: unchanged)."""
        if x.dtype != torch.uint8:
            return x
        if x.device not in self._on:
            self._on[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        mean, std = self._on[x.device]
        return x.to(torch.float32).div(255).sub(mean).div(std)

    def on_device(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 RGB [3, H_i, W_i] tensors -> uint8 [N, 3, H, W], on their device; images of
        one size are resized together."""
        if self.device_geometry is None:
            raise ValueError(f"this tower's preprocessing has no tensor form: {self.device_refusal}")
        out: list = [None] * len(images)
        by_size: dict = {}
        for i, im in enumerate(images):
            by_size.setdefault(tuple(im.shape), []).append(i)
        for idx in by_size.values():
            x = torch.stack([images[i] for i in idx])                       # [n, 3, H, W]
            for step in self.device_geometry:
                x = step(x)
            for i, y in zip(idx, x):
                out[i] = y
        return torch.stack(out)


def _tensor_steps(steps: list) -> tuple[list | None, str | None]:
    """The geometry steps that run on tensors, or None and the step that cannot."""
    out = []
    for t in steps:
        name = t.__name__ if isinstance(t, types.FunctionType) else type(t).__name__
        if name in ON_TENSORS:
            if name == "Resize" and getattr(t, "antialias", True) is False:
                return None, "its Resize does not antialias (the PIL path always does)"
            out.append(t)
        elif name in ALREADY_RGB:
            continue
        else:
            return None, f"its step {name} has no tensor form"
    return out, None

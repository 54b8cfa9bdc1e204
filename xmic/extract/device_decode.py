"""JPEG frames decoded and preprocessed on the encoder's device (``decode: gpu``).

The CPU path decodes with Pillow in the DataLoader workers and resizes there; this one moves
both to the GPU. Worker side: ``jpeg_segment(src, frames, views, box_of)`` -> ``JpegSegment``:
every frame's JPEG bytes in one uint8 tensor (one shared-memory block per segment), each
frame's size read from its header (no decoding) and, per view, each frame's crop box (None:
the full frame). Main side: ``DeviceDecoder(pixels, device)(segment)`` -> {view: uint8
[n, 3, H, W] on the device}: one batched torchvision ``decode_jpeg`` per segment (nvJPEG on
CUDA; libjpeg on the CPU, where tests run it), crops by slicing (the box rounded as Pillow's
``crop`` rounds it), then the tower's resize and centre crop on tensors
(``Preprocess.on_device``). A frame that does not decode fails its segment, named.
``check_device_decode`` refuses the option where it cannot run; ``DECODERS`` is what each
choice adds to a view's preprocessing fingerprint (the CPU path adds nothing, so its caches
keep their fingerprints; caches of the two decoders are never mixed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from xmic.config import XmicError
from xmic.extract.readers import ReadError, read_jpeg_bytes

DECODERS = {"cpu": {}, "gpu": {"decoder": "torchvision.decode_jpeg+tensor-resize"}}


class DeviceDecodeError(XmicError):
    """``--decode gpu`` where it cannot run."""


@dataclass
class JpegSegment:
    data: torch.Tensor                 # uint8 [sum of bytes]: every frame's JPEG, in order
    lengths: list[int]                 # bytes per frame
    where: list[str]                   # each frame's file or archive member
    frames: list[int]
    boxes: dict                        # {view: [(l, t, r, b) or None per frame]}

    def jpegs(self) -> list[torch.Tensor]:
        return list(self.data.split(self.lengths))


def jpeg_segment(src, frames: list[int], views, box_of=None) -> JpegSegment:
    read = read_jpeg_bytes(src, frames)
    boxes = {}
    if "full_frame" in views:
        boxes["full_frame"] = [None] * len(frames)
    if "hand_crop" in views:
        boxes["hand_crop"] = [box_of(f, w, h) if box_of is not None else None
                              for f, (_, (w, h), _) in zip(frames, read)]
    data = torch.frombuffer(bytearray(b"".join(d for d, _, _ in read)), dtype=torch.uint8)
    return JpegSegment(data, [len(d) for d, _, _ in read], [w for _, _, w in read], frames, boxes)


def pil_rounded(box) -> tuple[int, int, int, int]:
    """A float box as Pillow's ``Image.crop`` rounds it."""
    return tuple(int(round(c)) for c in box)


class DeviceDecoder:
    def __init__(self, pixels, device: torch.device):
        self.pixels, self.device = pixels, torch.device(device)

    def decode(self, seg: JpegSegment) -> list[torch.Tensor]:
        """uint8 RGB [3, H, W] per frame, on the device; a frame that fails is named."""
        from torchvision.io import ImageReadMode, decode_jpeg
        jpegs = seg.jpegs()
        try:
            return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            for data, where, f in zip(jpegs, seg.where, seg.frames):  # which one
                try:
                    decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
                except RuntimeError as e:
                    raise ReadError(f"{where}: frame {f} is not a decodable JPEG ({e})") from None
            raise

    def __call__(self, seg: JpegSegment) -> dict:
        images = self.decode(seg)
        out = {}
        for view, boxes in seg.boxes.items():
            crops = []
            for im, box in zip(images, boxes):
                if box is not None:
                    l, t, r, b = pil_rounded(box)
                    im = im[:, t:b, l:r]
                crops.append(im)
            out[view] = self.pixels.on_device(crops)                    # [n, 3, H, W] uint8
        return out


def check_device_decode(decode: str, enc, datasets: dict) -> None:
    """Refuse ``decode: gpu`` without a CUDA encoder, for a tower whose preprocessing has no
    tensor form, or for splits whose dataset has no JPEG frames (``datasets``: split ->
    dataset record)."""
    if decode != "gpu":
        return
    if enc.device.type != "cuda":
        raise DeviceDecodeError(f"--decode gpu decodes frames on a CUDA device, and this run's "
                                f"encoder is on {enc.device.type} (no CUDA here, or --device "
                                "cpu); use --decode cpu")
    if enc.pixels.device_geometry is None:
        raise DeviceDecodeError(f"--decode gpu: {enc.identity.get('name')}'s preprocessing "
                                f"cannot run on tensors ({enc.pixels.device_refusal}); use "
                                "--decode cpu")
    for split, record in datasets.items():
        if not (record.frames or record.archives):
            raise DeviceDecodeError(f"--decode gpu decodes JPEG frames, and split {split!r} "
                                    f"({record.name}) is video files; use --decode cpu")

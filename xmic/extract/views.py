"""The view tensors of one segment's decoded frames: full frames and hand crops.

Input: the decoded images, their frame numbers, the views wanted, the encoder's ``pixels``
transform and ``box_of(frame, image)`` (a box source's crop box, or None for the full frame).
Output: ``{view: uint8 [n, 3, H, W]}``. Extraction and ``predict`` both go through here.
"""
from __future__ import annotations


def view_tensors(images, frames: list[int], views, transform, box_of=None) -> dict:
    """{view: [n, 3, H, W]} of one segment's decoded frames: ``full_frame`` is each image,
    ``hand_crop`` each image cropped to ``box_of(frame, image)`` (None: the full frame),
    both through ``transform`` (the encoder's ``pixels``: resized and centre-cropped uint8, the
    arithmetic left to the encoder's device). Extraction and ``predict`` both go through here."""
    import torch
    out = {}
    if "full_frame" in views:
        out["full_frame"] = torch.stack([transform(im) for im in images])
    if "hand_crop" in views:
        crops = []
        for f, im in zip(frames, images):
            box = box_of(f, im) if box_of is not None else None
            crops.append(transform(im.crop(box) if box else im))
        out["hand_crop"] = torch.stack(crops)
    return out

"""Tiny datasets in the real on-disk layouts for extraction tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from xmic.demo.epic_layout import (annotation_row, detection, frame_folder, save_frame,
                                   write_annotations, write_classes, write_detections,
                                   write_video_info)
from xmic.towers.encoders import TINY_CONFIG

TINY = TINY_CONFIG
W, H = 64, 48


def frame_image(i: int, hue: int) -> Image.Image:
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = (hue * 40) % 256
    a[..., 1] = (i * 7) % 256
    a[10:30, 20:40, 2] = 200  # the "hand and object" area
    return Image.fromarray(a)


def make_epic(root: Path, videos=("P01_01", "P01_02"), frames=120, segs_per_video=3) -> dict:
    root = Path(root)
    ann, det = root / "annotations", root / "detections"
    ann.mkdir(parents=True)
    rows = []
    for v, vid in enumerate(videos):
        d = frame_folder(root / "media", vid)
        msgs = []
        for f in range(1, frames + 1):
            save_frame(d, f, frame_image(f, v))
            msgs.append(detection(vid, f, (0.30, 0.20, 0.45, 0.50), (0.50, 0.20, 0.65, 0.60),
                                  (0.15, 0.0), side=0))
        write_detections(det, vid, msgs)
        for s in range(segs_per_video):
            a = 1 + s * 35
            rows.append(annotation_row(f"{vid}_{s}", vid, a / 10, (a + 30) / 10, a, a + 30,
                                       "take", s % 2, "x", (v + s) % 3))
    write_annotations(ann / "EPIC_100_train.csv", rows)
    write_classes(ann, ["board:chopping", "knife", "pan:dust"], ["take", "put"])
    write_video_info(ann, list(videos), 12.0, 10.0, (W, H))
    return {"root": root / "media", "annotations": ann / "EPIC_100_train.csv", "boxes": det}


def write_mp4(path: Path, n: int, fps: int = 30, hue: int = 0) -> None:
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_image(frame_image(i, hue))):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_ego4d(root: Path, clips=("clipA", "clipB"), frames=240) -> dict:
    root = Path(root)
    (root / "media").mkdir(parents=True)
    acts = []
    for c, uid in enumerate(clips):
        write_mp4(root / "media" / f"{uid}.mp4", frames, 30, c)
        step = 100 if frames >= 260 else (frames - 20) // 2  # both actions inside the clip
        for a in range(2):
            s0 = 10 + a * step
            acts.append({"clip_uid": uid, "action_idx": a, "action_clip_start_sec": s0 / 30,
                         "action_clip_end_sec": (s0 + 150) / 30, "action_clip_start_frame": s0,
                         "action_clip_end_frame": min(s0 + 150, frames - 1), "verb": "take_(pick)",
                         "noun": "knife", "verb_label": 0, "noun_label": 1})
    (root / "fho_lta_val.json").write_text(json.dumps({"clips": acts}))
    (root / "tax.json").write_text(json.dumps({"verbs": ["take_(pick)", "wash"],
                                               "nouns": ["chopping_board", "knife", "door"]}))
    return {"root": root / "media", "annotations": root / "fho_lta_val.json", "taxonomy": root / "tax.json"}

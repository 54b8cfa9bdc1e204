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


EGTEA_CLIPS = (("OP01-R01-PastaSalad-4000-5600-F000101-F000140", 1, 2),
               ("OP01-R01-PastaSalad-9000-9900-F000201-F000240", 2, 1),
               ("OP02-R03-Cheeseburger-100-900-F000005-F000044", 1, 1))


def egtea_handless(i: int) -> bool:
    return i % 10 in (3, 6, 9)


def egtea_detector_frame(i: int, scale: float = 2.0) -> dict | None:
    """Clip frame ``i`` (from 0) as the 100DOH detector returns it: a hand whose box moves with
    ``i`` (so a wrong numbering gives other crops); no hand on 30 % of the frames
    (``egtea_handless``)."""
    if egtea_handless(i):
        return {"hand_dets": None, "obj_dets": None}
    from xmic.demo.world import detector_frame
    x = 4 + (i % 10) * 2
    return detector_frame((x, 8, x + 14, 28), (x + 16, 10, x + 26, 24), scale)


def make_egtea(root: Path, numbering: str = "clip", layout: str = "flat", frames: int = 40,
               keys=None) -> dict:
    """EGTEA Gaze+ test split 1 (official text files), trimmed mp4 clips ``flat``
    (``ROOT/{clip}.mp4``) or as ``shipped`` (``ROOT/{video}/{clip}.mp4``), and 100DOH pickles
    numbered from 0 over each clip (``clip``) or by the parent video's frames (``video``);
    ``keys`` (clip -> frame numbers from 0) restricts the frames the detector ran on."""
    import pickle
    root = Path(root)
    media, det = root / "clips", root / "hand-objects"
    det.mkdir(parents=True)
    lines = []
    for c, (clip, verb, noun) in enumerate(EGTEA_CLIPS):
        start = int(clip.rsplit("-F", 2)[1])
        where = media / clip.rsplit("-", 4)[0] if layout == "shipped" else media
        where.mkdir(parents=True, exist_ok=True)
        write_mp4(where / f"{clip}.mp4", frames, 24, c)
        data = {"info": {"width": 2 * W, "height": 2 * H}}
        for i in (keys or {}).get(clip, range(frames)):
            data[i + (start if numbering == "video" else 0)] = egtea_detector_frame(i)
        (det / f"{clip}.pkl").write_bytes(pickle.dumps(data))
        lines.append(f"{clip} {c + 1} {verb} {noun}")
    (root / "test_split1.txt").write_text("\n".join(lines) + "\n")
    (root / "verb_idx.txt").write_text("Take 1\nPut 2\n")
    (root / "noun_idx.txt").write_text("knife 1\ncutting board 2\n")
    return {"root": media, "annotations": root / "test_split1.txt", "boxes": det}

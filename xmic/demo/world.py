"""A small generated egocentric world in the real file formats, for the demo.

Input: an output folder and a seed. Output (deterministic), returned as a dict of paths:
- source ``epic/``: ``P0x/rgb_frames/P0x_yy/frame_*.jpg``, ``EPIC_100_{train,validation}.csv``,
  class CSVs, ``EPIC_100_video_info.csv``, hand-object detection pickles ``detections/VIDEO.pkl``;
- target ``ego4d/``: ``clips/{clip_uid}.mp4`` (PyAV), ``fho_lta_val.json``, the taxonomy JSON,
  hand-object detections as the 100DOH detector writes them (``hand-objects/{clip_uid}.pkl``, in
  pixels of frames twice the clips' size, as a detector run on the full-resolution video), and
  the same crops as a hand box table ``boxes.csv`` (for ``xmic predict --boxes``).
Each action shows a coloured object (its noun) held by a hand that touches it, moving the way its
verb says, next to a larger distractor object of another class. The vocabularies are partly
shared (knife, chopping board, pan, cup) and partly novel in the target (door, phone).
"""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from xmic.demo.epic_layout import (annotation_row, detection, frame_folder, save_frame,
                                   write_annotations, write_classes, write_detections,
                                   write_video_info)

W, H = 128, 96
# noun -> (EPIC key or None, Ego4D name or None, colour, shape)
NOUNS = [("knife", "knife_(knife,_machete)", (200, 200, 210), "bar"),
         ("board:chopping", "chopping_board", (150, 100, 50), "box"),
         ("pan", "pan", (40, 40, 40), "disc"),
         ("cup", "cup_(cup,_mug)", (220, 40, 40), "disc"),
         ("spoon", None, (230, 190, 40), "bar"),
         ("bowl", None, (40, 160, 220), "disc"),
         (None, "door", (120, 70, 160), "box"),
         (None, "phone_(phone,_cellphone)", (20, 200, 120), "box")]
VERBS = [("take", "take_(pick,_grab,_get)", (0, -2)), ("put", "put_(place,_leave,_drop)", (0, 2)),
         ("wash", None, (2, 0)), (None, "open", (-2, 0))]
SKIN = (224, 172, 130)


def _draw(rng, noun: int, verb: int, t: int, distractor: int) -> tuple[Image.Image, tuple, tuple]:
    """One frame: background, distractor, the action's object and the hand touching it.
    Returns the image, the hand box and the object box (pixels)."""
    im = Image.new("RGB", (W, H), (90 + (distractor * 13) % 60, 110, 100))
    d = ImageDraw.Draw(im)
    dc, ds = NOUNS[distractor][2], NOUNS[distractor][3]
    box = (8, 8, 52, 44) if (noun + t // 50) % 2 else (74, 8, 120, 44)
    (d.ellipse if ds == "disc" else d.rectangle)(box, fill=dc)
    dx, dy = VERBS[verb][2]
    cx = 64 + dx * (t % 10) + int(rng.integers(-2, 3))
    cy = 60 + dy * (t % 10) + int(rng.integers(-2, 3))
    colour, shape = NOUNS[noun][2], NOUNS[noun][3]
    obj = (cx - 10, cy - 6, cx + 10, cy + 6) if shape == "bar" else (cx - 9, cy - 9, cx + 9, cy + 9)
    (d.ellipse if shape == "disc" else d.rectangle)(obj, fill=colour)
    hand = (obj[2] - 4, cy - 7, obj[2] + 12, cy + 7)
    d.rectangle(hand, fill=SKIN)
    return im, hand, obj


def _classes(idx: int) -> list[int]:
    return [i for i, n in enumerate(NOUNS) if n[idx] is not None]


def make_world(out: str | Path, seed: int = 0, videos: int = 6, segments_per_video: int = 6,
               frames_per_segment: int = 24, ego_clips: int = 4, actions_per_clip: int = 3) -> dict:
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = _epic_world(out / "epic", rng, videos, segments_per_video, frames_per_segment)
    clips = _ego4d_world(out / "ego4d", rng, ego_clips, actions_per_clip, frames_per_segment)
    return {"epic": out / "epic", "ego4d": out / "ego4d",
            "segments": {k: len(v) for k, v in rows.items()}, "ego4d_actions": clips}


def _epic_world(epic: Path, rng, videos: int, segments_per_video: int,
                frames_per_segment: int) -> dict:
    """EPIC-layout frames, detections and annotations; the last video is the validation split."""
    e_nouns, e_verbs = _classes(0), [i for i, v in enumerate(VERBS) if v[0]]
    rows = {"train": [], "validation": []}
    ids = [f"P{v // 3 + 1:02d}_{v % 3 + 1:02d}" for v in range(videos)]
    for v, vid in enumerate(ids):
        folder = frame_folder(epic, vid)
        msgs, f = [], 1
        for s in range(segments_per_video):
            noun, verb = int(rng.choice(e_nouns)), int(rng.choice(e_verbs))
            distractor = int(rng.choice([n for n in e_nouns if n != noun]))
            start = f
            for t in range(frames_per_segment):
                im, hand, obj = _draw(rng, noun, verb, t, distractor)
                save_frame(folder, f, im, quality=92)
                offset = (((obj[0] + obj[2]) - (hand[0] + hand[2])) / 2 / W,
                          ((obj[1] + obj[3]) - (hand[1] + hand[3])) / 2 / H)
                msgs.append(detection(vid, f, _unit(hand), _unit(obj), offset, hand_score=0.97,
                                      object_score=0.9))
                f += 1
            split = "validation" if v == videos - 1 else "train"
            rows[split].append(annotation_row(
                f"{vid}_{s}", vid, (start - 1) / 10, (f - 1) / 10, start, f - 1, VERBS[verb][0],
                e_verbs.index(verb), NOUNS[noun][0], e_nouns.index(noun)))
        write_detections(epic / "detections", vid, msgs)
    for split, r in rows.items():
        write_annotations(epic / f"EPIC_100_{split}.csv", r)
    write_classes(epic, [NOUNS[i][0] for i in e_nouns], [VERBS[i][0] for i in e_verbs], "demo")
    write_video_info(epic, ids, 60.0, 10.0, (W, H))
    return rows


def _unit(box: tuple) -> tuple:
    return (box[0] / W, box[1] / H, box[2] / W, box[3] / H)


def detector_frame(hand: tuple, obj: tuple, scale: float) -> dict:
    """One frame as the 100DOH detector returns it, boxes scaled by ``scale``: a hand in contact
    with a portable object (state 3), its offset (magnitude / 10000, unit dx, dy) pointing at
    the object's centre, and that object."""
    h = [v * scale for v in hand]
    o = [v * scale for v in obj]
    vx = (o[0] + o[2]) / 2 - (h[0] + h[2]) / 2
    vy = (o[1] + o[3]) / 2 - (h[1] + h[3]) / 2
    norm = max((vx * vx + vy * vy) ** 0.5, 1e-9)
    return {"hand_dets": np.array([[*h, 0.97, 3.0, norm / 10000, vx / norm, vy / norm, 1.0]],
                                  np.float32),
            "obj_dets": np.array([[*o, 0.8, 0, 0, 0, 0, 0]], np.float32)}


def _ego4d_world(ego: Path, rng, ego_clips: int, actions_per_clip: int,
                 frames_per_segment: int) -> int:
    """Ego4D-layout mp4 clips, FHO annotations, taxonomy and a hand box table."""
    import av
    (ego / "clips").mkdir(parents=True, exist_ok=True)
    g_nouns, g_verbs = _classes(1), [i for i, v in enumerate(VERBS) if v[1]]
    clips, boxes = [], [["video_id", "frame", "left", "top", "right", "bottom"]]
    fps = 10
    (ego / "hand-objects").mkdir(exist_ok=True)
    for c in range(ego_clips):
        uid = f"demo{c:03d}"
        detected = {"info": {"width": 2 * W, "height": 2 * H}}
        with av.open(str(ego / "clips" / f"{uid}.mp4"), "w") as container:
            st = container.add_stream("mpeg4", rate=fps)
            st.width, st.height, st.pix_fmt = W, H, "yuv420p"
            fr = 0
            for a in range(actions_per_clip):
                noun, verb = int(rng.choice(g_nouns)), int(rng.choice(g_verbs))
                distractor = int(rng.choice([n for n in g_nouns if n != noun]))
                start = fr
                for t in range(frames_per_segment * 2):
                    im, hand, obj = _draw(rng, noun, verb, t, distractor)
                    for p in st.encode(av.VideoFrame.from_image(im)):
                        container.mux(p)
                    boxes.append([uid, fr, min(hand[0], obj[0]), min(hand[1], obj[1]),
                                  max(hand[2], obj[2]), max(hand[3], obj[3])])
                    detected[fr] = detector_frame(hand, obj, 2)
                    fr += 1
                clips.append({"clip_uid": uid, "video_uid": f"demo-video{c // 2:03d}",
                              "action_idx": a, "action_clip_start_sec": start / fps,
                              "action_clip_end_sec": (fr - 1) / fps, "action_clip_start_frame": start,
                              "action_clip_end_frame": fr - 1, "verb": VERBS[verb][1],
                              "noun": NOUNS[noun][1], "verb_label": g_verbs.index(verb),
                              "noun_label": g_nouns.index(noun)})
            for p in st.encode():
                container.mux(p)
        with open(ego / "hand-objects" / f"{uid}.pkl", "wb") as fh:
            pickle.dump(detected, fh)
    (ego / "fho_lta_val.json").write_text(json.dumps({"version": "demo", "clips": clips}))
    (ego / "fho_lta_taxonomy.json").write_text(json.dumps(
        {"verbs": [VERBS[i][1] for i in g_verbs], "nouns": [NOUNS[i][1] for i in g_nouns]}))
    with open(ego / "boxes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(boxes)
    return len(clips)

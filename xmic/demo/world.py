"""A small generated egocentric world in the real file formats, for the demo.

Input: an output folder and a seed. Output (deterministic), returned as a dict of paths:
- source ``epic/``: ``P0x/rgb_frames/P0x_yy/frame_*.jpg``, ``EPIC_100_{train,validation}.csv``,
  class CSVs, ``EPIC_100_video_info.csv``, hand-object detection pickles ``detections/VIDEO.pkl``;
- target ``ego4d/``: ``clips/{clip_uid}.mp4`` (PyAV), ``fho_lta_val.json``, the taxonomy JSON, and
  a hand box table ``boxes.csv``.
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
    from xmic.extract.detections import hoa_messages
    out = Path(out)
    rng = np.random.default_rng(seed)
    epic, ego = out / "epic", out / "ego4d"
    (epic / "detections").mkdir(parents=True, exist_ok=True)
    (ego / "clips").mkdir(parents=True, exist_ok=True)
    e_nouns, e_verbs = _classes(0), [i for i, v in enumerate(VERBS) if v[0]]
    g_nouns, g_verbs = _classes(1), [i for i, v in enumerate(VERBS) if v[1]]
    rows = {"train": [], "validation": []}
    for v in range(videos):
        vid = f"P{v // 3 + 1:02d}_{v % 3 + 1:02d}"
        folder = epic / vid.split("_")[0] / "rgb_frames" / vid
        folder.mkdir(parents=True, exist_ok=True)
        msgs, f = [], 1
        for s in range(segments_per_video):
            noun, verb = int(rng.choice(e_nouns)), int(rng.choice(e_verbs))
            distractor = int(rng.choice([n for n in e_nouns if n != noun]))
            start = f
            for t in range(frames_per_segment):
                im, hand, obj = _draw(rng, noun, verb, t, distractor)
                im.save(folder / f"frame_{f:010d}.jpg", quality=92)
                m = hoa_messages()["Detections"](video_id=vid, frame_number=f)
                h = m.hands.add(score=0.97, state=3, side=1)
                h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = (hand[0] / W, hand[1] / H,
                                                                        hand[2] / W, hand[3] / H)
                h.object_offset.x = ((obj[0] + obj[2]) - (hand[0] + hand[2])) / 2 / W
                h.object_offset.y = ((obj[1] + obj[3]) - (hand[1] + hand[3])) / 2 / H
                o = m.objects.add(score=0.9)
                o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = (obj[0] / W, obj[1] / H,
                                                                        obj[2] / W, obj[3] / H)
                msgs.append(m.SerializeToString())
                f += 1
            split = "validation" if v == videos - 1 else "train"
            t0, t1 = (start - 1) / 10, (f - 1) / 10
            ts = [f"00:00:{x:05.2f}" if x < 60 else f"00:{int(x // 60):02d}:{x % 60:05.2f}" for x in (t0, t1)]
            rows[split].append([f"{vid}_{s}", vid.split("_")[0], vid, ts[0], ts[0], ts[1], start,
                                f - 1, f"{VERBS[verb][0]} {NOUNS[noun][0]}", VERBS[verb][0],
                                e_verbs.index(verb), NOUNS[noun][0], e_nouns.index(noun), "[]", "[]"])
        with open(epic / "detections" / f"{vid}.pkl", "wb") as fh:
            pickle.dump(msgs, fh)
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class",
              "noun", "noun_class", "all_nouns", "all_noun_classes"]
    for split, r in rows.items():
        with open(epic / f"EPIC_100_{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(r)
    for kind, ids, idx in (("noun", e_nouns, NOUNS), ("verb", e_verbs, VERBS)):
        with open(epic / f"EPIC_100_{kind}_classes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "key", "instances", "category"])
            w.writerows([[k, idx[i][0], "[]", "demo"] for k, i in enumerate(ids)])
    with open(epic / "EPIC_100_video_info.csv", "w", newline="") as fh:
        fh.write("video_id,duration,fps,resolution\n")
        for v in range(videos):
            fh.write(f"P{v // 3 + 1:02d}_{v % 3 + 1:02d},60.0,10.0,{W}x{H}\n")
    import av
    clips, boxes = [], [["video_id", "frame", "left", "top", "right", "bottom"]]
    fps = 10
    for c in range(ego_clips):
        uid = f"demo{c:03d}"
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
                    fr += 1
                clips.append({"clip_uid": uid, "action_idx": a, "action_clip_start_sec": start / fps,
                              "action_clip_end_sec": (fr - 1) / fps, "action_clip_start_frame": start,
                              "action_clip_end_frame": fr - 1, "verb": VERBS[verb][1],
                              "noun": NOUNS[noun][1], "verb_label": g_verbs.index(verb),
                              "noun_label": g_nouns.index(noun)})
            for p in st.encode():
                container.mux(p)
    (ego / "fho_lta_val.json").write_text(json.dumps({"version": "demo", "clips": clips}))
    (ego / "fho_lta_taxonomy.json").write_text(json.dumps(
        {"verbs": [VERBS[i][1] for i in g_verbs], "nouns": [NOUNS[i][1] for i in g_nouns]}))
    with open(ego / "boxes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(boxes)
    return {"epic": epic, "ego4d": ego, "segments": {k: len(v) for k, v in rows.items()},
            "ego4d_actions": len(clips)}

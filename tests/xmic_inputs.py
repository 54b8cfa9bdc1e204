"""Small, deterministic inputs in the real formats, for the demo, tests and benchmarks.

Input: an output folder, a dataset kind (``epic`` or ``ego4d``), sizes and a seed.
Output (files, as users have them): EPIC ``EPIC_100_{split}.csv`` + class CSVs + video info, or
Ego4D ``fho_lta_{split}.json`` + taxonomy JSON; X-MIC feature pickles per split and view
(``dict[segment_id -> float32 [n_frames, D]]``, every frame of the segment), with a few
segments left out on purpose; and text embeddings ``{noun,verb}_text.npy`` [C, D]. Features are
class prototypes plus noise, so a model trained on them learns something.
Returns a dict naming every file written.
"""
from __future__ import annotations

import csv
import json
import pickle
import zlib
from pathlib import Path

import numpy as np

EPIC_NOUNS = ["tap", "spoon", "plate", "cupboard", "knife", "pan", "board:chopping", "bowl",
              "pan:dust", "lid", "fridge", "cup"]
EPIC_VERBS = ["take", "put", "wash", "open", "close", "cut"]
EGO4D_NOUNS = ["spoon_(spoon,_spoonful)", "plate", "knife_(knife,_machete)", "bowl",
               "cup_(cup,_mug)", "door", "phone_(phone,_cellphone)", "lid"]
EGO4D_VERBS = ["take_(pick,_grab,_get)", "put_(place,_leave,_drop)", "wash", "open",
               "cut_(trim,_slice,_chop)"]
VIEWS = ("full_frame", "hand_crop")


def _prototypes(names: list[str], dim: int, seed_text: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    return rng.standard_normal((len(names), dim)).astype(np.float32) * 3.0


def _features(rng, n: int, noun_p, verb_p, view: str) -> np.ndarray:
    base = noun_p + 0.5 * verb_p if view == "hand_crop" else 0.6 * noun_p + 0.4 * verb_p
    return (base[None, :] + rng.standard_normal((n, base.shape[0])) * 2.0).astype(np.float32)


def _timestamp(sec: float) -> str:
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:05.2f}"


def make_xmic_inputs(out: str | Path, dataset: str = "epic", splits=("train", "validation"),
                     segments_per_split: int = 40, dim: int = 512, seed: int = 0,
                     missing_per_split: int = 1, fps: float = 10.0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nouns, verbs = (EPIC_NOUNS, EPIC_VERBS) if dataset == "epic" else (EGO4D_NOUNS, EGO4D_VERBS)
    noun_p, verb_p = _prototypes(nouns, dim, "nouns" + dataset), _prototypes(verbs, dim, "verbs" + dataset)
    files: dict = {"dataset": dataset, "dim": dim, "splits": {}}
    if dataset == "epic":
        for kind, names in (("noun", nouns), ("verb", verbs)):
            p = out / f"EPIC_100_{kind}_classes.csv"
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "key", "instances", "category"])
                for i, k in enumerate(names):
                    w.writerow([i, k, str([k]), "synthetic"])
            files[f"{kind}_classes"] = p
        vi = out / "EPIC_100_video_info.csv"
        with open(vi, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "duration", "fps", "resolution"])
            for v in range(4):
                w.writerow([f"P01_{v + 1:02d}", 600.0, fps, "456x256"])
        files["video_info"] = vi
    else:
        tax = out / "fho_lta_taxonomy.json"
        tax.write_text(json.dumps({"verbs": verbs, "nouns": nouns}, indent=1))
        files["taxonomy"] = tax
    for split in splits:
        rows, feats = [], {v: {} for v in VIEWS}
        for i in range(segments_per_split):
            noun, verb = int(rng.integers(len(nouns))), int(rng.integers(len(verbs)))
            n = int(rng.integers(6, 24))  # frames in the segment
            video = f"P01_{i % 4 + 1:02d}"
            start = 1 + 30 * i
            if dataset == "epic":
                sid = f"{video}_{split[0]}{i}"
            else:
                sid = f"{split}_clip{i % 4:04d}_{i}"
            rows.append((sid, video, start, start + n - 1, noun, verb, i))
            for v in VIEWS:
                feats[v][sid] = _features(rng, n, noun_p[noun], verb_p[verb], v)
        drop = [r[0] for r in rows[-missing_per_split:]] if missing_per_split else []
        for v in VIEWS:
            for sid in drop[: 1 if v == "full_frame" else len(drop)]:
                feats[v].pop(sid, None)
        sfiles = {}
        if dataset == "epic":
            p = out / f"EPIC_100_{split}.csv"
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["narration_id", "participant_id", "video_id", "narration_timestamp",
                            "start_timestamp", "stop_timestamp", "start_frame", "stop_frame",
                            "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
                            "all_noun_classes"])
                for sid, video, s0, s1, noun, verb, _ in rows:
                    t0, t1 = (s0 - 1) / fps, s1 / fps
                    narr = f"{verbs[verb]} {nouns[noun]}"
                    w.writerow([sid, "P01", video, _timestamp(t0), _timestamp(t0), _timestamp(t1),
                                s0, s1, narr, verbs[verb], verb, nouns[noun], noun,
                                str([nouns[noun]]), str([noun])])
        else:
            p = out / f"fho_lta_{split}.json"
            clips = [{"clip_uid": sid.split("_")[1], "action_idx": idx,
                      "action_clip_start_sec": (s0 - 1) / fps, "action_clip_end_sec": s1 / fps,
                      "action_clip_start_frame": s0 - 1, "action_clip_end_frame": s1,
                      "verb": verbs[verb], "noun": nouns[noun], "verb_label": verb,
                      "noun_label": noun} for sid, _, s0, s1, noun, verb, idx in rows]
            p.write_text(json.dumps({"version": "synthetic", "split": split, "clips": clips}))
        sfiles["annotations"] = p
        for v in VIEWS:
            pk = out / f"{dataset}_{split}_{v}.pkl"
            with open(pk, "wb") as f:
                pickle.dump(feats[v], f, protocol=4)
            sfiles[v] = pk
        sfiles["missing"] = drop
        files["splits"][split] = sfiles
    for kind, proto in (("noun", noun_p), ("verb", verb_p)):
        p = out / f"{kind}_text.npy"
        np.save(p, proto + rng.standard_normal(proto.shape).astype(np.float32) * 0.5)
        files[f"{kind}_text"] = p
    return files

"""The reader's /data, generated small: what the README's "From /data to Table 1" block reads.

EPIC-100 train and validation annotations with frames packed as EPIC ships them (one tar per
video) and EPIC-100 detection pickles; Ego4D FHO train and val annotations, mp4 clips and the
100DOH detector's pickles; EGTEA Gaze+ test split 1 (official text files), trimmed clips in
EGTEA's own layout and 100DOH pickles numbered from 0 over each clip; X-MIC's class-split
lists (none for EGTEA, as released). Returns the mapping from the README's paths to them.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

from extract_data import H, W, make_ego4d, make_epic, write_mp4
from xmic.demo.epic_layout import pack_frames
from xmic.demo.world import detector_frame

HAND, OBJ = (20, 10, 30, 30), (32, 12, 42, 24)  # the generated frames' hand and object area


def detector_pickle(path: Path, frames) -> None:
    data = {"info": {"width": 2 * W, "height": 2 * H}}
    data.update({f: detector_frame(HAND, OBJ, 2) for f in frames})
    path.write_bytes(pickle.dumps(data))


def make_data(root: Path) -> dict:
    root = Path(root)
    anno = root / "anno"
    e = make_epic(root / "epic", videos=("P01_01", "P01_02"), frames=120, segs_per_video=2)
    shutil.copytree(e["annotations"].parent, anno)
    train = (anno / "EPIC_100_train.csv").read_text().splitlines()
    (anno / "EPIC_100_validation.csv").write_text(  # other narration ids, the same videos
        "\n".join([train[0]] + [ln.replace("P01_0", "P01_v0", 1) for ln in train[1:]]) + "\n")
    for folder in sorted((e["root"] / "P01" / "rgb_frames").iterdir()):
        pack_frames(folder)
    g = make_ego4d(root / "ego4d", frames=240)
    clips = json.loads(g["annotations"].read_text())["clips"]
    for split in ("train", "val"):
        (root / f"fho_lta_{split}.json").write_text(json.dumps({"clips": clips}))
    shutil.copy(g["taxonomy"], root / "fho_lta_taxonomy.json")
    (root / "ego4d" / "hand-objects").mkdir()
    for uid in ("clipA", "clipB"):
        detector_pickle(root / "ego4d" / "hand-objects" / f"{uid}.pkl", range(240))
    eg = root / "egtea"  # as EGTEA ships its clips: cropped_clips/{video}/{clip}.mp4
    (eg / "clips" / "OP01-R01-PastaSalad").mkdir(parents=True)
    (eg / "hand-objects").mkdir()
    lines = []
    for i, (verb, noun) in enumerate(((1, 2), (2, 1), (1, 1))):
        clip = f"OP01-R01-PastaSalad-{1000 * i}-{1000 * i + 900}-F{100 * i + 1:06d}-F{100 * i + 40:06d}"
        write_mp4(eg / "clips" / "OP01-R01-PastaSalad" / f"{clip}.mp4", 40, 24, i)
        # the detector run on each clip file: frames numbered from 0
        detector_pickle(eg / "hand-objects" / f"{clip}.pkl", range(40))
        lines.append(f"{clip} {i + 1} {verb} {noun}")
    (root / "test_split1.txt").write_text("\n".join(lines) + "\n")
    (root / "verb_idx.txt").write_text("Take 1\nPut 2\n")
    (root / "noun_idx.txt").write_text("knife 1\ncutting board 2\n")
    xmic = anno / "xmic"  # X-MIC's lists, as released: EPIC and Ego4D targets only
    xmic.mkdir()
    for name, lines in {"epic_ego_common_exact_noun": ["chopping_board", "knife"],
                        "epic_ego_non_common_exact_noun": ["dust_pan"],
                        "ego_epic_common_exact_noun": ["chopping_board", "knife"],
                        "ego_epic_non_common_exact_noun": ["door"],
                        "epic_ego_common_exact_verb": ["take"], "epic_ego_non_common_exact_verb": ["put"],
                        "ego_epic_common_exact_verb": ["take_(pick)"],
                        "ego_epic_non_common_exact_verb": ["wash"]}.items():
        (xmic / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return {"/data/EPIC-KITCHENS": e["root"], "/data/epic-hand-objects": e["boxes"],
            "/data/ego4d/clips": g["root"], "/data/ego4d/hand-objects": root / "ego4d" / "hand-objects",
            "/data/egtea/cropped_clips": eg / "clips", "/data/egtea/hand-objects": eg / "hand-objects"}

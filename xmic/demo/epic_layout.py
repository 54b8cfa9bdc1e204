"""The EPIC-100 layout, written once for the demo's world, the tests and the benchmarks.

Inputs: a root folder, video ids, frames (PIL images), boxes and annotation rows. Outputs, as
EPIC-KITCHENS-100 distributes them: ``ROOT/P01/rgb_frames/P01_01/frame_0000000001.jpg`` (1-based),
``EPIC_100_{split}.csv`` (15 columns), ``EPIC_100_{noun,verb}_classes.csv``,
``EPIC_100_video_info.csv``, a video's frames packed as EPIC ships them
(``ROOT/P01/rgb_frames/P01_01.tar``, members ``./frame_0000000001.jpg``), and hand-object
detections as the EPIC-100 library stores them: one
pickle per video holding a list of serialised ``Detections`` messages, boxes in [0, 1].
"""
from __future__ import annotations

import csv
import pickle
from pathlib import Path

ANNOTATION_HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp",
                     "start_timestamp", "stop_timestamp", "start_frame", "stop_frame", "narration",
                     "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]


def frame_folder(root: Path, video_id: str) -> Path:
    folder = Path(root) / video_id.split("_")[0] / "rgb_frames" / video_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_frame(folder: Path, frame: int, image, quality: int = 90) -> None:
    image.save(Path(folder) / f"frame_{frame:010d}.jpg", quality=quality)


def pack_frames(folder: Path, dot_prefix: bool = True, remove: bool = True) -> Path:
    """``FOLDER.tar`` holding the folder's frames as EPIC's archives do (``./frame_*.jpg``, or
    bare names); the folder is removed unless ``remove=False``."""
    import shutil
    import tarfile
    folder = Path(folder)
    out = folder.with_name(folder.name + ".tar")
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=("./" if dot_prefix else "") + f.name, recursive=False)
    if remove:
        shutil.rmtree(folder)
    return out


def detection(video_id: str, frame: int, hand: tuple, obj: tuple | None, offset: tuple,
              hand_score: float = 0.95, object_score: float = 0.5, state: int = 3,
              side: int = 1) -> bytes:
    """One frame's serialised ``Detections``: a hand (and the object it touches), boxes as
    (left, top, right, bottom) in [0, 1], the hand's offset towards the object."""
    from xmic.extract.boxes.epic100 import hoa_messages
    m = hoa_messages()["Detections"](video_id=video_id, frame_number=frame)
    h = m.hands.add(score=hand_score, state=state, side=side)
    h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom = hand
    h.object_offset.x, h.object_offset.y = offset
    if obj is not None:
        o = m.objects.add(score=object_score)
        o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom = obj
    return m.SerializeToString()


def write_detections(folder: Path, video_id: str, messages: list[bytes]) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"{video_id}.pkl", "wb") as fh:
        pickle.dump(messages, fh)


def annotation_row(segment_id: str, video_id: str, start_s: float, stop_s: float, start: int,
                   stop: int, verb: str, verb_class: int, noun: str, noun_class: int) -> list:
    def ts(x: float) -> str:
        return f"00:{int(x // 60):02d}:{x % 60:05.2f}"
    return [segment_id, video_id.split("_")[0], video_id, ts(start_s), ts(start_s), ts(stop_s),
            start, stop, f"{verb} {noun}", verb, verb_class, noun, noun_class, "[]", "[]"]


def write_annotations(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ANNOTATION_HEADER)
        w.writerows(rows)


def write_classes(folder: Path, nouns: list[str], verbs: list[str], category: str = "x") -> None:
    for kind, names in (("noun", nouns), ("verb", verbs)):
        with open(Path(folder) / f"EPIC_100_{kind}_classes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "key", "instances", "category"])
            w.writerows([[i, n, "[]", category] for i, n in enumerate(names)])


def write_video_info(folder: Path, videos: list[str], duration: float, fps: float,
                     size: tuple[int, int]) -> None:
    with open(Path(folder) / "EPIC_100_video_info.csv", "w", newline="") as fh:
        fh.write("video_id,duration,fps,resolution\n")
        fh.writelines(f"{v},{duration},{fps},{size[0]}x{size[1]}\n" for v in videos)

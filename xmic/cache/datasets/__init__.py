"""Every dataset as one record: its annotation reader, side files, media layout, frame rules,
class-name rule and X-MIC split tag; the segment schema and class lists.

Inputs: a dataset kind (a key of ``DATASETS``: ``epic``, ``ego4d``, ``egtea``, ``csv``), its
annotation file, the split name and the files that come with it. Output: ``(Segments,
{"noun": names, "verb": names})`` from ``read_dataset``, and the record the other stages ask:
``xmic.extract.media`` builds paths from ``frames``/``videos`` and ``first_frame``,
``xmic.cache.sampling`` takes ``window``, ``prompt_names`` the ``names`` rule, evaluation the
``split_tag``, the CLI the choices. Errors: ``DatasetError``, naming file and row. Adding a
dataset is a reader module and one entry here (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xmic.cache.datasets.common import (DatasetError, Segments, normalize_name,
                                        read_class_list)
from xmic.cache.datasets.ego4d import read_ego4d
from xmic.cache.datasets.egtea import egtea_video, read_egtea
from xmic.cache.datasets.epic import read_epic
from xmic.cache.datasets.generic_csv import read_generic
from xmic.cache.datasets.names import duplicate_prompts, ego4d_name, egtea_name, epic_name


@dataclass(frozen=True)
class SideFile:
    """A file that comes with a dataset's annotations: its keyword (``--name-with-dashes`` on
    the command line) and what it holds."""
    name: str
    help: str


@dataclass(frozen=True)
class Dataset:
    name: str
    read: Callable            # (annotations, split, root, **side files) -> (Segments, classes)
    side_files: tuple         # SideFile records: the files that come with the annotations
    frames: tuple             # JPEG-folder layouts under --root ({video}, {participant})
    archives: tuple           # uncompressed tars of the same JPEGs, one per video (never unpacked)
    videos: tuple             # video-file layouts under --root, tried in order
    video_first_frame: int    # annotation frame number of a video file's first frame
    trimmed: bool             # each video is one segment: its first frame is the segment's start
    window: str               # frame-sampling rule (xmic.cache.sampling.RULES)
    names: Callable           # raw class name -> prompt text (xmic.cache.datasets.names)
    split_tag: str | None     # name in X-MIC's class-split files ({target}_{source}_...)
    lists_released: bool = False  # X-MIC released shared/novel lists with it as a target
    released_prefix: tuple = ()  # classes X-MIC's released vocabulary puts before label 0
    importable: bool = False  # `xmic cache import` reads the released code's feature pickles
    participant: bool = False  # ids carry a participant folder (EPIC: P01_01 -> P01)
    parent: Callable | None = None  # a clip id -> its parent video's folder ({parent} in layouts)
    title: str = ""           # the name tables print (EPIC, Ego4D, EGTEA)
    license: str = "other"    # the Hugging Face license id a published cache's card carries
    terms: str = "the terms of the videos' owners apply to features computed from them"


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("epic", lambda a, s, r, **kw: read_epic(a, s, kw.get("noun_classes"),
                                                    kw.get("verb_classes"), kw.get("video_info")),
            (SideFile("noun_classes", "EPIC_100_noun_classes.csv (default: beside --annotations)"),
             SideFile("verb_classes", "EPIC_100_verb_classes.csv (default: beside --annotations)"),
             SideFile("video_info", "EPIC_100_video_info.csv, each video's fps (default: beside "
                      "--annotations)")),
            frames=("{participant}/rgb_frames/{video}",),
            archives=("{participant}/rgb_frames/{video}.tar",),
            videos=("{participant}/videos/{video}.MP4", "{participant}/videos/{video}.mp4"),
            video_first_frame=1, trimmed=False, window="segment", names=epic_name, split_tag="epic",
            lists_released=True, importable=True, participant=True, title="EPIC",
            license="cc-by-nc-4.0",
            terms="EPIC-KITCHENS-100 is released under CC BY-NC 4.0 (epic-kitchens.github.io); "
                  "features computed from its videos are shared under the same terms"),
    Dataset("ego4d", lambda a, s, r, **kw: read_ego4d(a, s, kw.get("taxonomy")),
            (SideFile("taxonomy", "fho_lta_taxonomy.json, the class names (required)"),),
            frames=(), archives=(), videos=("{video}.mp4",), video_first_frame=0,
            trimmed=False, window="central-window", names=ego4d_name, split_tag="ego", lists_released=True, importable=True,
            title="Ego4D",
            terms="Ego4D is used under the Ego4D license agreement (ego4ddataset.com); share "
                  "features computed from it only with people who accepted that agreement"),
    Dataset("egtea", lambda a, s, r, **kw: read_egtea(a, s), (), frames=(), archives=(),
            videos=("{video}.mp4", "{parent}/{video}.mp4"), video_first_frame=0, trimmed=True,
            window="segment", names=egtea_name, split_tag="egtea", title="EGTEA",
            terms="EGTEA Gaze+ is for non-commercial research under its terms of use "
                  "(cbs.ic.gatech.edu/fpv); features computed from it carry the same terms",
            parent=egtea_video, released_prefix=("",)),  # get_lab2cname: [''] + names
    Dataset("csv", lambda a, s, r, **kw: read_generic(a, s, r), (), frames=("{video}",),
            archives=(), videos=("{video}",), video_first_frame=0, trimmed=False, window="segment",
            names=normalize_name, split_tag=None, title="CSV"),
)}
KINDS = tuple(DATASETS)

__all__ = ["DATASETS", "Dataset", "SideFile", "DatasetError", "KINDS", "Segments", "dataset",
           "duplicate_prompts", "normalize_name", "prompt_names", "read_class_list",
           "read_dataset", "read_ego4d", "read_egtea", "read_epic", "read_generic"]


def dataset(kind: str) -> Dataset:
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind {kind!r}; use one of {', '.join(DATASETS)}")
    return DATASETS[kind]


def read_dataset(kind: str, annotations: Path, split: str, root: Path,
                 **side_files) -> tuple[Segments, dict]:
    """``side_files``: the files the record declares (unset ones may be None); a file of
    another dataset is refused, naming what this one takes."""
    d = dataset(kind)
    given = {k: v for k, v in side_files.items() if v is not None}
    takes = [f.name for f in d.side_files]
    other = [k for k in given if k not in takes]
    if other:
        flag = "--" + other[0].replace("_", "-")
        raise DatasetError(f"{flag} is not a file of dataset {kind}; it takes "
                           + (", ".join("--" + t.replace("_", "-") for t in takes) or "none")
                           + f"; leave {flag} out")
    return d.read(annotations, split, root, **given)


def prompt_names(kind: str, classes: list[str]) -> list[str]:
    """The prompt text of each class by the dataset's released rule (others: the generic one)."""
    rule = DATASETS[kind].names if kind in DATASETS else normalize_name
    return [rule(c) for c in classes]

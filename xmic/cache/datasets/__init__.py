"""Every dataset's annotation reader, the class-name rules and the segment schema, in one place.

Inputs: a dataset kind (``epic``, ``ego4d``, ``egtea``, ``csv``), its annotation file, the split
name and the files that come with it (class lists, video info, taxonomy). Output: ``(Segments,
{"noun": names, "verb": names})``. Errors: ``DatasetError``, naming file and row. Where each
segment's frames lie on disk is the extraction stage's business (``xmic.extract.media``).
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache.datasets.common import (DatasetError, Segments, normalize_name,
                                        read_class_list)
from xmic.cache.datasets.ego4d import read_ego4d
from xmic.cache.datasets.egtea import read_egtea
from xmic.cache.datasets.epic import read_epic
from xmic.cache.datasets.generic_csv import read_generic

KINDS = ("epic", "ego4d", "egtea", "csv")

__all__ = ["DatasetError", "KINDS", "Segments", "normalize_name", "read_class_list",
           "read_dataset", "read_ego4d", "read_egtea", "read_epic", "read_generic"]


def read_dataset(kind: str, annotations: Path, split: str, root: Path, **kw) -> tuple[Segments, dict]:
    if kind == "epic":
        return read_epic(annotations, split, kw.get("noun_classes"), kw.get("verb_classes"),
                         kw.get("video_info"))
    if kind == "ego4d":
        return read_ego4d(annotations, split, kw.get("taxonomy"))
    if kind == "egtea":
        return read_egtea(annotations, split)
    if kind == "csv":
        return read_generic(annotations, split, root)
    raise DatasetError(f"unknown dataset kind {kind!r}; use one of {', '.join(KINDS)}")

"""Hand-object boxes: every box format as a record behind one protocol (``BoxSource``).

Inputs, one of (docs/hand-boxes.md): a folder of per-video pickles ``VIDEO.pkl``, EPIC-100's
released detections or the 100DOH detector's own output (``folder``, ``epic100``, ``detector``);
a parquet/CSV box table or X-MIC's box pickle, in pixels (``tables``). Output: ``open_boxes`` ->
the ``BoxSource`` of a path, which answers for (video, segment, frame): ``box`` (the crop box in
pixels, or None for the full frame), ``frames_with_boxes`` and ``usable_frames`` (the coverage
check at plan time), ``numbering`` (a trimmed clip's frame keys), ``describe`` (its
``box_format``, recorded with the plan and in the fingerprint). ``PAIRING`` says which formats
pair hands with objects otherwise than the EPIC-100 library (``crop.pairing``). Adding a format
is one class here and one entry in ``SOURCES`` (or ``folder.VIDEO_FORMATS``).
"""
from __future__ import annotations

from pathlib import Path

from xmic.extract.boxes.folder import VIDEO_FORMATS, FolderSource
from xmic.extract.boxes.rule import BoxError, BoxSource
from xmic.extract.boxes.tables import TableSource, XmicBoxSource

SOURCES = (FolderSource, TableSource, XmicBoxSource)  # the first that accepts a path reads it
PAIRING = {f.box_format: f.pairing for f in VIDEO_FORMATS if f.pairing}

__all__ = ["BoxError", "BoxSource", "PAIRING", "SOURCES", "open_boxes"]


def open_boxes(path, hand_score: float = 0.8, object_score: float = 0.01,
               min_box_px: float = 1.0, box_format: str | None = None,
               trimmed: bool = False) -> BoxSource:
    """The box source of ``path`` (``box_format``: a folder's format when the plan knows it)."""
    path = Path(path)
    known = box_format if box_format not in (None, "detections") else None
    for source in SOURCES:
        if source.accepts(path):
            return source(path, hand_score, object_score, min_box_px, trimmed, known)
    raise BoxError(f"{path}: not a folder of detection pickles, a .pkl box dict, or a "
                   ".parquet/.csv box table")

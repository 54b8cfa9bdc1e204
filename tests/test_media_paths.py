"""Paths built from annotation ids stay under the media root: every derived component (EPIC's
participant folder, csv relative paths, detection files), at plan time and when frames are read."""
from __future__ import annotations

import pytest

from xmic.cache.datasets import DatasetError
from xmic.extract.boxes import BoxError, open_boxes
from xmic.extract.media import check_media_id, frame_source, media_path


def test_a_participant_folder_derived_from_an_id_cannot_leave_the_root(tmp_path):
    root = tmp_path / "data" / "root"
    root.mkdir(parents=True)
    outside = tmp_path / "data" / "rgb_frames" / ".._01"  # what root/../rgb_frames/.._01 names
    outside.mkdir(parents=True)
    (outside / "frame_0000000001.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a plain name inside the media root"):
        check_media_id("epic", ".._01", "annotation 3 (segment .._01_0)")
    with pytest.raises(DatasetError, match="media root"):  # checked again when frames are read
        frame_source("epic", root, ".._01")
    for kind, vid in (("epic", "._01"), ("csv", "a/../../x"), ("csv", "a/./b")):
        with pytest.raises(DatasetError):
            frame_source(kind, root, vid)
    (root / "P01" / "rgb_frames" / "P01_01").mkdir(parents=True)
    assert frame_source("epic", root, "P01_01").path == root / "P01" / "rgb_frames" / "P01_01"
    (root / "sub").mkdir()
    (root / "sub" / "clip.mp4").write_bytes(b"")
    assert frame_source("csv", root, "sub/clip.mp4").kind == "video"


def test_media_path_checks_every_component(tmp_path):
    assert media_path(tmp_path, "a", "b.mp4") == tmp_path / "a" / "b.mp4"
    for parts in (("..", "x"), ("a", ""), ("a/../..",), ("~user",), ("a\\..\\..",)):
        with pytest.raises(DatasetError, match="leaves the media root"):
            media_path(tmp_path, *parts, where="row 7")


def test_detection_files_stay_in_their_folder(tmp_path):
    src = open_boxes(tmp_path)
    for vid in ("..", "a/b", ""):
        with pytest.raises((BoxError, DatasetError)):
            src.box(vid, "seg", 1, 100, 100)

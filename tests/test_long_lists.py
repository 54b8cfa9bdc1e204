"""Long lists in messages: a few names, the count, and a new private file with all of them."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from xmic.files.long_lists import some


def test_a_short_list_is_shown_whole_and_a_long_one_cut_with_a_file():
    assert some(["a", "b"], sep="; ") == "a; b"
    items = [f"video{i:02d}: missing" for i in range(30)]
    text = some(items, 4, sep="; ", what="unusable frames")
    head, _, tail = text.partition("; and ")
    assert head.split("; ") == items[:4]
    assert tail.startswith("26 more (all 30 in ") and tail.endswith(".txt)")
    path = Path(tail[len("26 more (all 30 in "):-1])
    assert path.name.startswith("xmic-unusable-frames-")
    assert path.read_text().splitlines() == items
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.unlink()


def test_no_file_is_written_through_a_planted_name_and_none_is_said_when_none_can_be(
        tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secret = tmp_path / "secret"
    secret.write_text("keep\n")
    text = some(range(10), 2)
    assert "(all 10 in " in text and secret.read_text() == "keep\n"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    assert some(range(10), 2) == "0, 1, and 8 more (the rest could not be written to a file)"

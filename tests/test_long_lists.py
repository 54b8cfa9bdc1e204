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


def test_the_file_is_new_in_the_temporary_folder_and_its_absence_is_said(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secret = tmp_path / "secret"
    secret.write_text("keep\n")
    text = some(range(10), 2)
    made = Path(text.split("(all 10 in ")[1].rstrip(")"))
    assert made.parent == tmp_path and made != secret and secret.read_text() == "keep\n"
    assert made.read_text() == "".join(f"{i}\n" for i in range(10))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    assert some(range(10), 2) == "0, 1, and 8 more (the rest could not be written to a file)"

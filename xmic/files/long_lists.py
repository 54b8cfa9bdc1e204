"""Long lists in messages: a few items, a count, and a file with all of them.

Input: the items (anything ``str`` writes), how many to show, a separator and a word for the file
name. Output: ``"a; b; c; and 27 more (all 30 in /tmp/xmic-missing-videos-k2j4.txt)"``; the file
holds every item, one per line. It is created new (``mkstemp``: ``O_EXCL``, mode 0600, never
through a planted link) in the system's temporary folder, so a refusal that leaves the user's
folders untouched can still hand over the whole list. Where no file can be written the message
says so and keeps the count.
"""
from __future__ import annotations

import os
import re
import tempfile

SHOWN = 5


def some(items, shown: int = SHOWN, sep: str = ", ", what: str = "items") -> str:
    """The first ``shown`` items joined by ``sep``; with more, the count and the file of all."""
    items = [str(x) for x in items]
    if len(items) <= shown:
        return sep.join(items)
    head = sep.join(items[:shown])
    path = write_all(items, what)
    where = f"all {len(items)} in {path}" if path else "the rest could not be written to a file"
    return f"{head}{sep}and {len(items) - shown} more ({where})"


def write_all(items: list[str], what: str) -> str | None:
    """A new file in the temporary folder holding ``items``, one per line; its path, or None."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", what).strip("-") or "items"
    try:
        fd, path = tempfile.mkstemp(prefix=f"xmic-{stem}-", suffix=".txt")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{x}\n" for x in items))
    except OSError:
        return None
    return path

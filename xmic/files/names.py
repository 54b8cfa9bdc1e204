"""Names that become path components.

Input: a name from a user, an annotation, a plan or a manifest. Output: the name when it is one
plain component (``check_name``), else ``BadName`` saying what it may hold.
"""
from __future__ import annotations

import re

from xmic.config import XmicError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class BadName(XmicError):
    """A name that would not be one plain path component."""


def check_name(kind: str, name: str) -> str:
    """View, shard, vocabulary, dataset, split, method and run names become path parts: keep
    them plain."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise BadName(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.' "
                      "(at most 128, not starting with '.')")
    return name

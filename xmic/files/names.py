"""Names that become path components, and the JSON files xmic reads back.

Inputs: a name from a user, an annotation, a plan or a manifest; a JSON file path. Outputs: the
name when it is one plain component (``check_name``), else ``BadName`` saying what it may hold;
a JSON object (``read_json``), else ``BadFile`` saying the file is missing, unreadable or not an
object; the canonical JSON form hashes are taken of.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from xmic.config import XmicError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class BadName(XmicError):
    """A name that would not be one plain path component."""


class BadFile(XmicError):
    """A file of ours that is missing, unreadable or of the wrong shape."""


def check_name(kind: str, name: str) -> str:
    """View, shard, vocabulary, dataset, split, method and run names become path parts: keep
    them plain."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise BadName(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.' "
                      "(at most 128, not starting with '.')")
    return name


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BadFile(f"{path}: {what} is missing") from None
    except (OSError, ValueError) as e:
        raise BadFile(f"{path}: {what} is unreadable ({e})") from None
    if not isinstance(data, dict):
        raise BadFile(f"{path}: {what} is not a JSON object")
    return data

"""The JSON files xmic reads back, and the canonical JSON form hashes are taken of.

Input: a JSON file path (and what it is, for the message). Output: a JSON object
(``read_json``), else ``BadFile`` saying the file is missing, unreadable or not an object;
``canonical_json(obj)``, the one text form fingerprints and plan hashes are taken of.
"""
from __future__ import annotations

import json
from pathlib import Path

from xmic.config import XmicError


class BadFile(XmicError):
    """A file of ours that is missing, unreadable or of the wrong shape."""


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

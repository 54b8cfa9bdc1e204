"""What every dataset reader shares: the segment columns, the class-name rules, class lists.

Inputs: class list files (one name per line, an EPIC class CSV, a taxonomy JSON field) and raw
names. Outputs: ``Segments`` (column lists in the index's segment schema, one definition:
``xmic.cache.index.SEGMENT_FIELDS``), class names in id order, docs/method.md §1 normalised names.
Every reader raises ``DatasetError`` naming the file and the row or key.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from xmic.cache.index import SEGMENT_FIELDS
from xmic.config import XmicError


class DatasetError(XmicError):
    """An annotation or class file that cannot be read as its dataset's format."""


SPECIAL = {"use to": "use", "end of": "end", "bring into": "bring"}


def normalize_name(name: str) -> str:
    """EPIC ``pan:dust`` -> ``dust pan``; ``turn-on`` -> ``turn on``; Ego4D
    ``spoon_(spoon,_spoonful)`` -> ``spoon``; X-MIC ``chopping_board`` -> ``chopping board``."""
    s = name.strip().lower()
    s = re.sub(r"_?\(.*?\)", "", s)           # Ego4D synonym lists
    if ":" in s:
        s = " ".join(reversed(s.split(":")))  # EPIC keys: natural word order
    s = re.sub(r"[-_\s]+", " ", s).strip()
    return SPECIAL.get(s, s)


def empty_columns() -> dict[str, list]:
    """One empty list per segment column of the index schema."""
    return {f.name: [] for f in SEGMENT_FIELDS}


@dataclass
class Segments:
    """Column lists, one entry per segment, in annotation order."""
    columns: dict = field(default_factory=empty_columns)

    def __len__(self) -> int:
        return len(self.columns["segment_id"])

    def append(self, **row) -> None:
        """Add one segment; every column of the schema must be given, and nothing else."""
        if set(row) != set(self.columns):
            raise DatasetError(f"segment row with columns {sorted(row)}; the schema has "
                               f"{sorted(self.columns)}")
        for k, v in row.items():
            self.columns[k].append(v)


def open_text(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read {what} ({e})") from None


def parse_timestamp(text: str, where: str) -> float:
    """EPIC ``HH:MM:SS.ff`` -> seconds."""
    try:
        h, m, s = text.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        raise DatasetError(f"{where}: bad timestamp {text!r}, expected HH:MM:SS.ff") from None


def read_class_list(path: Path, field: str | None = None) -> list[str]:
    """Class names in id order from a text list, an EPIC class CSV, or a taxonomy JSON."""
    path = Path(path)
    text = open_text(path, "class list")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from None
        if field is None:
            raise DatasetError(f"{path}: a taxonomy JSON needs --field (one of {sorted(data)})")
        names = data.get(field) if isinstance(data, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: key {field!r} is not a list of class names")
        return list(names)
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "id" not in rows[0] or "key" not in rows[0]:
            raise DatasetError(f"{path}: an EPIC class CSV needs columns id,key")
        names: dict[int, str] = {}
        for i, r in enumerate(rows, start=2):
            try:
                cid = int(r["id"])
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: line {i}: bad class id {r['id']!r}") from None
            if cid in names:
                raise DatasetError(f"{path}: line {i}: duplicate class id {cid}")
            names[cid] = r["key"]
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"{path}: class ids are not 0..{len(names) - 1}")
        return [names[i] for i in range(len(names))]
    names = [ln.strip() for ln in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path}: class list is empty")
    return names


def check_unique(ids: list[str], path: Path, rows: list[int]) -> None:
    seen: dict[str, int] = {}
    for sid, row in zip(ids, rows):
        if sid in seen:
            raise DatasetError(f"{path}: row {row}: duplicate segment id {sid!r} (first at row "
                               f"{seen[sid]}); segment ids must be unique")
        seen[sid] = row


def class_label(value, classes: list[str] | None, path: Path, row: int, what: str) -> tuple[int, str]:
    try:
        cid = int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: row {row}: bad {what} id {value!r}") from None
    if classes is not None and not 0 <= cid < len(classes):
        raise DatasetError(f"{path}: row {row}: {what} id {cid} out of range 0..{len(classes) - 1}; "
                           f"is this the right class list?")
    return cid, (classes[cid] if classes is not None else "")


def csv_rows(path: Path, need: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV file as dicts; it must have rows and the columns ``need``."""
    try:
        rows = list(csv.DictReader(Path(path).read_text(encoding="utf-8-sig").splitlines()))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotations ({e.strerror})") from None
    if not rows:
        raise DatasetError(f"{path}: no rows")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}")
    return rows

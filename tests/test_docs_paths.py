"""Every file a README or docs page names exists, and every test they cite by name is defined:
docs that point to modules, scripts or tests that were renamed are caught here."""
from __future__ import annotations

import re
from pathlib import Path

from helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOKEN = re.compile(r"`([^`\s]+)`")
PATHY = re.compile(r"^[A-Za-z0-9_.\-/]+\.(py|md|sh|json|toml|cfg)$|^(xmic|tests|bench|scripts|docs)/")
ROOTS = ("", "xmic/", "tests/", "tests/faults/", "bench/", "scripts/")
# docs/method.md cites files of the released X-MIC repository, not of this one
RELEASED = ("datasets/", "trainers/", "Dassl.pytorch/")


def _candidates(doc: Path):
    for token in TOKEN.findall(doc.read_text()):
        path, _, rest = token.partition("::")
        path = path.split(":")[0].rstrip(",.;)")
        if any(part.split(".")[0].isupper() for part in Path(path).parts):
            continue  # a placeholder: views/VIEW/view.json, cache/datasets/NAME.py
        if doc.name == "method.md" and path.startswith(RELEASED):
            continue
        if "*" in path or "{" in path or path.startswith(("/", "~", ".", "ROOT", "CACHE", "GRID",
                                                          "RUN", "OUT", "caches/", "runs/")):
            continue
        named_test = path.startswith("test_") and path.endswith(".py")
        if PATHY.match(path) and ("/" in path or named_test):  # a bare name is an output file
            yield path, rest.split("[")[0] if rest else ""


def _resolve(path: str) -> Path | None:
    for root in ROOTS:
        p = REPO / (root + path)
        if p.exists():
            return p
    return None


def test_every_path_and_test_named_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        for path, test in _candidates(doc):
            p = _resolve(path)
            if p is None:
                missing.append(f"{doc.name}: {path}")
            elif test and p.suffix == ".py" and f"def {test}(" not in p.read_text():
                missing.append(f"{doc.name}: {path}::{test}")
    assert not missing, missing

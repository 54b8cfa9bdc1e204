"""What produced an output: the xmic version and, when run from a git checkout, its commit.

Output: ``provenance()`` -> {"version": ..., "commit": ... or None, "dirty": bool}, written into
every run's config and checkpoint; ``describe()`` -> one line for ``xmic --version``. The commit
is read from the checkout's ``.git`` files (no git binary, no subprocess); an installed package
has none.
"""
from __future__ import annotations

import functools
from pathlib import Path

__version__ = "0.1.0"  # the package's version (re-exported as ``xmic.__version__``)

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def commit() -> str | None:
    """The checkout's HEAD commit, read from .git (a detached HEAD, a branch ref or packed refs)."""
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if len(head) == 40 else None
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def provenance() -> dict:
    return {"version": __version__, "commit": commit()}


def describe() -> str:
    c = commit()
    return __version__ + (f" (commit {c[:12]})" if c else "")

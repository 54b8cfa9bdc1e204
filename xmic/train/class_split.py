"""The base-to-novel protocol's class split: which classes a run trains on, which it is tested
on as novel.

Input: a vocabulary, the class ids of the training split's segments and ``ClassesConfig``.
Output: ``ClassSplit`` (rule, base and novel class keys), recorded in every checkpoint so that
evaluation scores base classes among base classes and novel among novel, as CoOp/CoCoOp's
base-to-novel setting does. Rules (one record each in ``RULES``):
- ``id-half`` (CoOp's ``subsample_classes``): the classes present in the training split, sorted
  by id; the first ceil(n/2) are base, the rest novel;
- ``frequency``: the same classes by training count (most first, ties by id): the frequent
  half is base, the long tail novel;
- ``lists``: ``LISTS/base_LABEL.txt`` and ``novel_LABEL.txt``, one class key per line.
Classes absent from the training split are in neither part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xmic.config import XmicError


class ClassSplitError(XmicError):
    pass


@dataclass(frozen=True)
class ClassSplit:
    rule: str
    base: tuple[str, ...]
    novel: tuple[str, ...]

    def keys(self, part: str) -> tuple[str, ...]:
        if part not in ("base", "novel"):
            raise ValueError(f"part {part!r}: base or novel")
        return self.base if part == "base" else self.novel

    def ids(self, classes: list[str], part: str) -> np.ndarray:
        """Positions in ``classes`` (a vocabulary's keys) of the part's classes."""
        pos = {c: i for i, c in enumerate(classes)}
        missing = [c for c in self.keys(part) if c not in pos]
        if missing:
            raise ClassSplitError(f"{len(missing)} {part} class(es) of the run are not in this "
                                  f"vocabulary (e.g. {missing[:3]}); base-to-novel is scored on "
                                  "the dataset the run was trained on")
        return np.array([pos[c] for c in self.keys(part)], dtype=np.int64)

    def vocab(self, vocab, part: str):
        """The vocabulary of the part's classes only (rows in the part's order)."""
        if vocab.label_offset:
            raise ClassSplitError(f"vocabulary {vocab.name} puts classes before label 0 (a "
                                  "released vocabulary); base-to-novel uses a plain one")
        at = self.ids(vocab.classes, part)
        return replace(vocab, classes=[vocab.classes[i] for i in at],
                       names=[vocab.names[i] for i in at], embeddings=vocab.embeddings[at])

    def record(self) -> dict:
        return {"rule": self.rule, "base": list(self.base), "novel": list(self.novel)}

    @classmethod
    def from_record(cls, d: dict | None, where: str) -> "ClassSplit":
        if not isinstance(d, dict) or not isinstance(d.get("base"), list):
            raise ClassSplitError(f"{where} was not trained base-to-novel (no class split "
                                  "recorded); score it with --classes all")
        return cls(str(d.get("rule")), tuple(d["base"]), tuple(d.get("novel") or ()))


def _present(classes: list[str], labels: np.ndarray) -> list[int]:
    return sorted(int(x) for x in np.unique(labels) if 0 <= x < len(classes))


def _id_half(classes, labels, cfg, label):
    present = _present(classes, labels)
    m = math.ceil(len(present) / 2)
    return [classes[i] for i in present[:m]], [classes[i] for i in present[m:]]


def _frequency(classes, labels, cfg, label):
    counts = np.bincount(labels[(labels >= 0) & (labels < len(classes))],
                         minlength=len(classes))
    present = sorted(_present(classes, labels), key=lambda i: (-counts[i], i))
    m = math.ceil(len(present) / 2)
    return [classes[i] for i in present[:m]], [classes[i] for i in present[m:]]


def _lists(classes, labels, cfg, label):
    out = []
    for part in ("base", "novel"):
        path = Path(cfg.lists) / f"{part}_{label}.txt"
        try:
            keys = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ClassSplitError(f"{path}: cannot read the {part} class list ({e})") from None
        unknown = [k for k in keys if k not in classes]
        if unknown:
            raise ClassSplitError(f"{path}: {len(unknown)} class(es) not in the vocabulary "
                                  f"(e.g. {unknown[:3]})")
        out.append(keys)
    if set(out[0]) & set(out[1]):
        raise ClassSplitError(f"{cfg.lists}: a class is both base and novel "
                              f"({sorted(set(out[0]) & set(out[1]))[:3]})")
    return out[0], out[1]


RULES = {"id-half": _id_half, "frequency": _frequency, "lists": _lists}


def make_split(classes: list[str], labels: np.ndarray, cfg, label: str) -> ClassSplit:
    """The split of ``classes`` by ``cfg.rule`` (``ClassesConfig``) over training ``labels``."""
    base, novel = RULES[cfg.rule](list(classes), np.asarray(labels, dtype=np.int64), cfg, label)
    if not base or not novel:
        raise ClassSplitError(f"rule {cfg.rule} leaves {'no base' if not base else 'no novel'} "
                              "class; base-to-novel needs both")
    return ClassSplit(cfg.rule, tuple(base), tuple(novel))

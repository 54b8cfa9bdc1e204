"""Class names as the released X-MIC dataset code turns them into prompt text, per dataset.

Input: a dataset kind and its raw class names (EPIC keys ``board:chopping``, Ego4D taxonomy
names ``bat_(sports)``, EGTEA names ``Clean/Wipe``). Output: the names that go into a prompt
template, lower case (CLIP's tokenizer lower-cases anyway). Rules, from the released code
(github Annusha/xmic):
- EPIC-100 (``datasets/epic_kitchen_segments_all_label_types.py``, ``fix_class_name``): the key is
  split on ':' and reversed, '-' becomes a space; "use to" -> "use", "end of" -> "end",
  "bring into" -> "bring".
- Ego4D (``datasets/ego4d_helper.py``, ``_fix_classes``, nouns and verbs alike, before the
  parenthesis is dropped): ``nut_`` names holding "food" become "nut", holding "tool" "nut_tool";
  ``chip_`` names without "food" become "chip_wood" when they hold "wood'", else "chip_metal";
  ``bat_`` names become "bat_tool" or "bat_sports"; a ``pot`` name holding "planter" becomes
  "planter"; then everything from '(' on is dropped.
- EGTEA Gaze+ (``datasets/egtea.py``, ``fix_class_name``): '/' becomes a space.
- Every dataset: '_' becomes a space (the trainers' ``name.replace("_", " ")``), runs of spaces
  collapse, the ends are stripped. Other datasets (generic CSV): ``common.normalize_name``.
Each dataset's record (``xmic.cache.datasets.DATASETS``) names its rule.
"""
from __future__ import annotations

import re

from xmic.cache.datasets.common import SPECIAL


def _spaces(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("_", " ")).strip().lower()


def epic_name(key: str) -> str:
    s = " ".join(reversed(key.strip().split(":")))
    s = " ".join(s.split("-"))
    s = _spaces(s)
    return SPECIAL.get(s, s)


def ego4d_name(v: str) -> str:
    v = v.strip()
    if v.startswith("nut_"):
        if "food" in v:
            v = "nut"
        elif "tool" in v:
            v = "nut_tool"
    if v.startswith("chip_") and "food" not in v:
        v = "chip_wood" if "wood'" in v else "chip_metal"
    if v.startswith("bat_"):
        if "tool" in v:
            v = "bat_tool"
        elif "sports" in v:
            v = "bat_sports"
    if v.startswith("pot") and "planter" in v:
        v = "planter"
    return _spaces(v.split("(")[0])


def egtea_name(v: str) -> str:
    return _spaces(" ".join(v.split("/")))


def duplicate_prompts(classes: list[str], prompts: list[str]) -> list[tuple[str, str, str]]:
    """(class, other class, text) for every class whose prompt text an earlier class has."""
    seen: dict[str, str] = {}
    out = []
    for c, p in zip(classes, prompts):
        if p in seen:
            out.append((seen[p], c, p))
        else:
            seen[p] = c
    return out

"""The extraction plan as typed records: what ``extract_plan.json`` holds, loaded and saved in
one place.

Input: a cache root (``ExtractPlan.load``), or the fields ``xmic.extract.planning.plan`` decides
for a split. Output: ``ExtractPlan`` (per split a ``SplitPlan``, per label the class list) and
``ExtractPlan.save``. ``SplitPlan`` holds a split's dataset kind, annotation file, media root,
views, box source and its format (``box_format``), how its trimmed clips' pickles number frames
(``frame_keys``), the extraction settings its coverage was measured with (``settings``, the
defaults of ``extract run``), the plan's hash, its segment count and the videos planned despite
missing inputs. ``inputs()`` are the fields a re-plan compares. The file's keys stay those of
earlier releases (``boxes_format``, ``boxes_frame_keys``), so a plan they wrote still loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmic.cache.paths import PLAN_FILE
from xmic.config import XmicError
from xmic.files.atomic import write_json_atomic
from xmic.files.json_files import read_json

# record field -> the file's key (the file keeps the keys earlier releases wrote)
FILE_KEYS = {"box_format": "boxes_format", "frame_keys": "boxes_frame_keys"}
INPUTS = ("root", "boxes", "box_format", "frame_keys")   # what a re-plan compares
BOX_INPUTS = ("boxes", "box_format", "frame_keys")       # inputs only hand crops depend on


class PlanFileError(XmicError):
    pass


@dataclass(frozen=True)
class SplitPlan:
    dataset: str
    annotations: str
    root: str
    views: tuple[str, ...]
    boxes: str | None = None
    box_format: str | None = None    # epic-100 | 100doh | table | xmic-boxes
    frame_keys: str | None = None    # trimmed clips' pickles counting from 0: clip | clip+video
    settings: dict = field(default_factory=dict)  # crop thresholds and sampling of the plan
    plan_sha256: str = ""
    segments: int = 0
    missing: dict = field(default_factory=dict)   # video -> why, planned with --allow-missing

    def inputs(self) -> dict:
        """The inputs a re-plan compares (``INPUTS``)."""
        return {k: getattr(self, k) for k in INPUTS}

    def to_json(self) -> dict:
        out = {FILE_KEYS.get(k, k): getattr(self, k) for k in self.__dataclass_fields__}
        out["views"] = list(self.views)
        return out

    @classmethod
    def from_json(cls, d: dict, where: str) -> "SplitPlan":
        back = {v: k for k, v in FILE_KEYS.items()}
        try:
            kw = {back.get(k, k): v for k, v in d.items() if back.get(k, k) in cls.__dataclass_fields__}
            kw["views"] = tuple(kw["views"])
            return cls(**kw)
        except (KeyError, TypeError) as e:
            raise PlanFileError(f"{where}: a split entry lacks {e} (plan the split again)") from None


@dataclass(frozen=True)
class ExtractPlan:
    splits: dict = field(default_factory=dict)    # split -> SplitPlan
    classes: dict = field(default_factory=dict)   # label -> class names

    @staticmethod
    def path(cache_root) -> Path:
        return Path(cache_root) / PLAN_FILE

    @classmethod
    def exists(cls, cache_root) -> bool:
        return cls.path(cache_root).is_file()

    @classmethod
    def load(cls, cache_root, what: str = "extraction plan (run `xmic extract plan` first)"
             ) -> "ExtractPlan":
        path = cls.path(cache_root)
        meta = read_json(path, what)
        if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
            raise PlanFileError(f"{path}: not an extraction plan")
        return cls({s: SplitPlan.from_json(d, f"{path}: split {s}")
                    for s, d in meta["splits"].items()}, dict(meta.get("classes") or {}))

    def save(self, cache_root) -> None:
        write_json_atomic(self.path(cache_root),
                          {"splits": {s: p.to_json() for s, p in self.splits.items()},
                           "classes": self.classes}, Path(cache_root))

"""Prompt templates for zero-shot ensembles: named sets, or a user's file.

Input: a set name (a key of ``TEMPLATE_SETS``) or a text file (one template per line, each with
one ``{}`` where the class name goes; blank lines and lines starting with ``#`` skipped).
Output: ``(name, templates)``; the name becomes the vocabulary's suffix (``noun.kinetics``).
Adding a set is one entry here.
"""
from __future__ import annotations

from pathlib import Path

from xmic.config import XmicError
from xmic.files.names import BadName, check_name

# the 28 templates of the CLIP paper's Kinetics-700 zero-shot evaluation (Radford et al. 2021)
KINETICS = tuple(f"{kind} of {who}{{}}." for kind in ("a photo", "a video", "a example",
                                                      "a demonstration")
                 for who in ("", "a person ", "a person using ", "a person doing ",
                             "a person during ", "a person performing ",
                             "a person practicing "))
# a short egocentric set: first-person views of hands and the objects they act on
EGOCENTRIC = ("a photo of {}.", "an egocentric photo of {}.", "a first-person view of {}.",
              "a first-person video of {}.", "a close-up of hands and {}.",
              "a video frame of {} seen from the camera wearer's eyes.")
TEMPLATE_SETS = {"kinetics": KINETICS, "ego": EGOCENTRIC}
MAX_TEMPLATES = 1000
MAX_BYTES = 1 << 20


class TemplateError(XmicError):
    pass


def read_templates(spec: str) -> tuple[str, tuple[str, ...]]:
    """``(name, templates)`` of a set name or a template file."""
    if spec in TEMPLATE_SETS:
        return spec, TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise TemplateError(f"--templates {spec!r}: neither a template set "
                            f"({', '.join(TEMPLATE_SETS)}) nor a file")
    try:
        name = check_name("template set", path.stem)
    except BadName as e:
        raise TemplateError(f"--templates {spec}: the file's name names the vocabulary: {e}") from None
    try:
        if path.stat().st_size > MAX_BYTES:
            raise TemplateError(f"{path}: {path.stat().st_size} bytes; a template file holds at "
                                f"most {MAX_TEMPLATES} short lines ({MAX_BYTES} bytes)")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"{path}: cannot read the templates ({e})") from None
    out = []
    for i, line in enumerate(lines, start=1):
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise TemplateError(f"{path}: line {i}: {t!r} needs exactly one {{}} where the class "
                                "name goes, and no other braces")
        out.append(t)
    if not out or len(out) > MAX_TEMPLATES:
        raise TemplateError(f"{path}: holds {len(out)} templates; give 1 to {MAX_TEMPLATES}")
    if len(set(out)) != len(out):
        raise TemplateError(f"{path}: a template is listed twice")
    return name, tuple(out)

"""The paper's table from ``metrics.json`` files: one row per (method, source dataset), per
label and target dataset the columns top-1 / class-mean / shared / novel / HM, and per label the
HM of in-dataset and cross-dataset top-1. Several seeds of a run give ``mean ± std`` (sample
standard deviation, n − 1).

Inputs: run folders (every ``metrics.json`` below them) or metrics files; a criterion (exact |
semantic | default); a format (md | csv | latex). Output: the table as text. A metrics file
that is unreadable or holds a score that is not a number in [0, 100] is left out and named
(``valid_metrics``, the rule ``grid table`` applies too).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from xmic.evaluate.metrics import harmonic_mean

FIELDS = (("top1", "top-1"), ("mean_class_acc", "class-mean"), ("shared", "shared"),
          ("novel", "novel"), ("hm", "HM"))


SCORE_PREFIXES = ("top1", "top5", "mean_class_acc", "shared_", "novel_", "hm_")


def valid_metrics(m) -> bool:
    """A metrics.json as evaluation writes it: a mapping with top-1, every score a finite number
    in [0, 100] (shared/novel/HM may be null: no sample of that kind)."""
    if not isinstance(m, dict) or "top1" not in m:
        return False
    for k, v in m.items():
        if not k.startswith(SCORE_PREFIXES) or k.endswith("_classes"):
            continue
        if v is None and k != "top1":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 100.0:
            return False  # NaN and inf fail the range check too
    return True


def collect(paths, skipped: list | None = None) -> list[dict]:
    """Every valid ``metrics.json`` below ``paths`` (``valid_metrics``, naming a method); the
    others (unreadable, out of range) are appended to ``skipped`` as ``(path, why)``."""
    out = []
    for p in map(Path, paths):
        files = sorted(p.rglob("metrics.json")) if p.is_dir() else [p]
        for f in files:
            try:
                m = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                why = f"unreadable ({type(e).__name__})"
            else:
                if valid_metrics(m) and isinstance(m.get("method"), str):
                    if m.get("class_part") in ("base", "novel"):  # base-to-novel: apart
                        m = {**m, "dataset": f"{m.get('dataset')}-{m['class_part']}"}
                    out.append(m)
                    continue
                why = "not an evaluation's metrics (a score missing, not a number or outside 0-100)"
            if skipped is not None:
                skipped.append((str(f), why))
    return out


def _value(m: dict, field: str, crit: str):
    return m.get(f"{field}_{crit}") if field in ("shared", "novel", "hm") else m.get(field)


def _cell(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def build_table(metrics: list[dict], criterion: str = "exact") -> tuple[list[str], list[list[str]]]:
    rows = sorted({(m["method"], m.get("source_dataset", "?")) for m in metrics})
    targets = sorted({(m["label"], m["dataset"]) for m in metrics})
    header = ["method", "source", "seeds"]
    for label, target in targets:
        header += [f"{label} {target} {name}" for _, name in FIELDS]
    crosses = sorted({(m["label"], m["dataset"]) for m in metrics if not m.get("in_dataset")})
    header += [f"{label} HM in/{target}" for label, target in crosses]
    body = []
    for method, source in rows:
        mine = [m for m in metrics if m["method"] == method and m.get("source_dataset", "?") == source]
        line = [method, source, str(len({m.get("seed") for m in mine}))]
        for label, target in targets:
            cell = [m for m in mine if (m["label"], m["dataset"]) == (label, target)]
            line += [_cell([_value(m, f, criterion) for m in cell]) for f, _ in FIELDS]
        for label, target in crosses:
            ins = {m.get("seed"): m["top1"] for m in mine if m["label"] == label and m.get("in_dataset")}
            cross = {m.get("seed"): m["top1"] for m in mine
                     if (m["label"], m["dataset"]) == (label, target)}
            line.append(_cell([harmonic_mean(ins[s], cross[s]) for s in sorted(ins.keys() & cross.keys(),
                                                                                key=str)]))
        body.append(line)
    return header, body


def format_table(header: list[str], body: list[list[str]], fmt: str = "md") -> str:
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(body)
        return buf.getvalue()
    if fmt == "latex":
        cols = "l" * 3 + "r" * (len(header) - 3)
        esc = [h.replace("%", r"\%").replace("_", r"\_") for h in header]
        lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(esc) + r" \\", r"\midrule"]
        lines += [" & ".join(c.replace("±", r"$\pm$") for c in row) + r" \\" for row in body]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"
    if fmt != "md":
        raise ValueError(f"unknown table format {fmt!r}; use md, csv or latex")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"

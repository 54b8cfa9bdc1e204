"""The paper's tables of a grid, built from its tidy results.

Input: the results DataFrame of ``xmic.grid.results`` (one row per run, target and metric)
and the recipe's order of methods, sources and targets. Output, per label, one table in the
paper's layout: rows are methods in the recipe's order (zero-shot first in the built-in
recipes), column groups source -> target (each source's own dataset first, then the others in
the recipe's order: EPIC->EPIC, EPIC->Ego4D, EPIC->EGTEA, Ego4D->Ego4D, Ego4D->EPIC, ...), then
per source and cross-dataset target the harmonic mean of its in-dataset and cross-dataset
value (per seed, then averaged); cells are mean ± std over seeds of ``--metric`` (top-1,
class-mean, shared, novel or HM of shared and novel, by class-split criterion). Formats:
markdown, CSV (one header row; mean, std and seeds in columns of their own) and LaTeX
(booktabs, a multicolumn header per source, the best value of each column in bold). The figure
is ``grid.figure``'s.
"""
from __future__ import annotations

import csv
import io

from xmic.evaluate.metrics import harmonic_mean
from xmic.grid.results import seed_stats
from xmic.config import XmicError
from xmic.train.methods import METHODS

METRIC_CHOICES = {"top-1": "top1", "class-mean": "class_mean", "shared": "shared",
                  "novel": "novel", "HM": "hm"}
NEEDS_CRITERION = ("shared", "novel", "hm")
MARKERS = "osD^vP*Xph<>"


def title(dataset: str) -> str:
    """A dataset's name as papers print it (its record's ``title``), else the recipe's key."""
    from xmic.cache.datasets import DATASETS
    return DATASETS[dataset].title if dataset in DATASETS else dataset


def columns(sources: list[str], targets: list[str]) -> list[tuple]:
    """("score", source, target) groups in the paper's order, then ("hm", source, target)."""
    out = []
    for s in sources:
        out += [("score", s, t) for t in ([s] if s in targets else []) + [t for t in targets if t != s]]
    out += [("hm", s, t) for s in sources if s in targets for t in targets if t != s]
    return out


def _select(df, label: str, metric: str, criterion: str):
    sub = df[(df["label"] == label) & (df["metric"] == metric) & (df["classes"] == "all")]
    if metric in NEEDS_CRITERION:
        sub = sub[sub["criterion"] == criterion]
    return sub


NA = "n/a"  # a cell the grid never scores (a linear probe on another vocabulary)


def paper_table(df, label: str, metric: str, criterion: str, methods: list[str],
                sources: list[str], targets: list[str],
                scored: set | None = None) -> tuple[list[tuple], dict]:
    """(columns, {method: {column: (mean, std, seeds), None (no score: not yet, or no sample),
    or NA (``scored``, the (method, label, source, target) the grid plans, lacks it)}})."""
    sub = _select(df, label, metric, criterion)
    cols = columns(sources, targets)
    values: dict = {}  # (method, source, target) -> {seed: value}
    for m, s, t, seed, v in zip(sub["method"], sub["source_dataset"], sub["target_dataset"],
                                sub["seed"], sub["value"]):
        values.setdefault((str(m), s, t), {})[int(seed)] = float(v)
    body = {}
    for method in methods:
        row = {}
        for kind, s, t in cols:
            if kind == "score":
                got = list(values.get((method, s, t), {}).values())
            else:  # per seed: HM of the in-dataset and this cross-dataset value
                ins, cross = values.get((method, s, s), {}), values.get((method, s, t), {})
                got = [harmonic_mean(ins[k], cross[k]) for k in ins if k in cross]
            row[(kind, s, t)] = seed_stats(got)
            if (row[(kind, s, t)] is None and scored is not None
                    and (method, label, s, t) not in scored and (method, label, s, s) in scored):
                row[(kind, s, t)] = NA
        body[method] = row
    return cols, body


PARTS = {"base": "base", "novel": "novel", "b2n-hm": "HM"}  # base-to-novel columns


def _head(col: tuple) -> str:
    if len(col) == 4:  # --by backbone: the backbone, then the column
        return f"{col[3]}: {_head(col[:3])}"
    kind, s, t = col
    if kind in PARTS:
        return f"{title(s)} {PARTS[kind]}"
    return f"{title(s)}→{title(t)}" if kind == "score" else f"HM {title(s)}+{title(t)}"


def _cell(st) -> str:
    if st is None or st == NA:
        return "–" if st is None else NA
    return f"{st[0]:.1f}" if st[2] == 1 else f"{st[0]:.1f} ± {st[1]:.1f}"


def _ci(sig, label: str, col: tuple, method: str) -> str:
    got = sig.intervals.get((label, col, method)) if sig is not None else None
    return f" [{got[0]:.1f}, {got[1]:.1f}]" if got else ""


def format_markdown(label: str, what: str, cols, body, sig=None) -> str:
    """A markdown table; with ``sig`` (``grid.significance``) each cell's interval, and the
    best in bold where it is significantly ahead of the second."""
    lines = [f"### {label}: {what}", "", "| method | " + " | ".join(map(_head, cols)) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for method, row in body.items():
        cells = []
        for c in cols:
            text = _cell(row[c]) + (_ci(sig, label, c, method) if isinstance(row[c], tuple)
                                    else "")
            won = sig is not None and sig.winners.get((label, c)) == method
            cells.append(f"**{text}**" if won else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(tables: list[tuple], sig=None, backbones: dict | None = None) -> str:
    """Every label's table in one CSV with one header row: label, method (and, in a grid of
    several backbones, the row's method and backbone apart), then per column its mean, std and
    number of seeds (empty where nothing is scored yet); with ``sig`` also the interval's ends
    and whether the cell is a significant best."""
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = tables[0][2] if tables else []
    keys = ("mean", "std", "seeds") + (("ci_low", "ci_high", "significant_best") if sig else ())
    split = bool(backbones) and any(b for _, b in backbones.values())
    w.writerow(["label", "method"] + (["backbone"] if split else [])
               + [f"{_head(c)} {k}" for c in cols for k in keys])
    for label, _, cols, body in tables:
        for method, row in body.items():
            cells = []
            for c in cols:
                st = row[c]
                cells += (["", "", 0] if st is None else [NA, NA, 0] if st == NA
                          else [round(st[0], 4), round(st[1], 4), st[2]])
                if sig:
                    got = sig.intervals.get((label, c, method))
                    cells += ([round(got[0], 4), round(got[1], 4)] if got else ["", ""])
                    cells.append(sig.winners.get((label, c)) == method)
            row = list(backbones.get(method, (method, ""))) if split else [method]
            w.writerow([label, *row, *cells])
    return buf.getvalue()


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("_", r"\_"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    return text


def display_names(grid: dict) -> dict:
    """Row -> its name in a paper's table: the recipe's ``display_names``, else the method's
    record (``X-MIC``, ``CLIP-Adapter``), a variant row as ``X-MIC (alpha-4)``."""
    given = grid["recipe"].get("display_names") or {}
    trainer = {r.get("row_method", r["method"]): r["config"].get("method", r["method"])
               for r in grid["runs"]}
    out = {}
    for row, method in trainer.items():
        if row in given:
            out[row] = str(given[row])
            continue
        shown = METHODS[method].display if method in METHODS and METHODS[method].display else method
        rest = row[len(method) + 1:] if row.startswith(method + "-") else ("" if row == method
                                                                          else row)
        out[row] = f"{shown} ({rest})" if rest else shown
    for r in grid["runs"]:  # a grid of several backbones: "X-MIC [vit-b-16]"
        if r.get("row_method"):
            out[r["method"]] = f"{out[r['row_method']]} [{r['backbone']}]"
    return out


def ranks(values: list[float]) -> tuple[float | None, float | None]:
    """(best, second best) of a column at the shown precision, each only when one row holds it
    (a tie is not a win)."""
    shown = sorted({round(v, 1) for v in values}, reverse=True)
    count = {v: sum(1 for x in values if round(x, 1) == v) for v in shown}
    best = shown[0] if shown and count[shown[0]] == 1 else None
    second = shown[1] if len(shown) > 1 and count[shown[1]] == 1 else None
    return best, second


def format_latex(label: str, what: str, cols, body, names: dict | None = None,
                 sig=None) -> str:
    """A booktabs tabular: a multicolumn header per source (and the HM group), rows by their
    display names; the best mean of each column in bold and the second underlined, each only
    when a single row holds it at the shown precision; with ``sig`` each cell's interval, and
    bold only for a best significantly ahead of the second (nothing underlined)."""
    groups = []  # (header, span)
    for c in cols:
        name = (f"{_tex(c[3])}: " if len(c) == 4 else "") + (
                title(c[1]) if c[0] in PARTS else f"{title(c[1])} $\\rightarrow$"
                if c[0] == "score" else "HM")
        if groups and groups[-1][0] == name:
            groups[-1][1] += 1
        else:
            groups.append([name, 1])
    marks = {c: ranks([r[c][0] for r in body.values() if r[c] not in (None, NA)]) for c in cols}
    out = [f"% {label}: {what}", r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule"]
    out.append(" & " + " & ".join(f"\\multicolumn{{{n}}}{{c}}{{{g}}}" for g, n in groups) + r" \\")
    start, rules = 2, []
    for _, n in groups:
        rules.append(f"\\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    out.append(" ".join(rules))
    out.append("Method & " + " & ".join({"base": "Base", "novel": "Novel"}.get(c[0], "HM")
                                        if c[0] in PARTS else
                                        title(c[2]) if c[0] == "score" else
                                        f"{title(c[1])}+{title(c[2])}" for c in cols) + r" \\")
    out.append(r"\midrule")
    for method, row in body.items():
        cells = []
        for c in cols:
            st = row[c]
            if st is None or st == NA:
                cells.append("--" if st is None else NA)
                continue
            text = f"{st[0]:.1f}" + (f" $\\pm$ {st[1]:.1f}" if st[2] > 1 else "")
            text += _ci(sig, label, c, method).replace("[", "{\\scriptsize [").replace(
                "]", "]}")
            best, second = marks[c]
            if sig is not None:
                won = sig.winners.get((label, c)) == method
                cells.append(f"\\textbf{{{text}}}" if won else text)
                continue
            cells.append(f"\\textbf{{{text}}}" if round(st[0], 1) == best else
                         f"\\underline{{{text}}}" if round(st[0], 1) == second else text)
        out.append(f"{_tex((names or {}).get(method, method))} & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def lists_note(grid: dict) -> str:
    """Where the shared/novel class lists came from: the recipe's folder, lists the grid
    derived (named, with their rule), or the exact-name rule applied at evaluation."""
    folder = grid["recipe"].get("class_splits")
    derived = grid.get("class_lists")
    out = f"Class lists: {folder}.\n" if folder else ""
    if derived:
        out += (f"Derived class lists ({derived['rule']}): {', '.join(derived['files'])}.\n")
    if not folder and not derived:
        out += "Class lists: derived at evaluation by the exact-name rule.\n"
    return out


def vocabulary_note(grid: dict) -> str:
    """Targets scored with a released vocabulary that adds classes (EGTEA's empty class)."""
    from xmic.cache import Cache
    from xmic.cache.vocab import load_vocab
    out = {}
    for r in grid["runs"]:
        for t in r["targets"]:
            key = (t["dataset"], r["label"])
            if key in out:
                continue
            try:
                v = load_vocab(Cache.open(t["cache"]), r["label"])
            except XmicError:
                out[key] = ""
                continue
            out[key] = (f"{t['dataset']} {r['label']}: {v.source.get('vocabulary')}.\n"
                        if v.label_offset else "")
    return "".join(out.values())


def side_by_side(df, grid: dict, metric: str, criterion: str) -> list[tuple]:
    """``label_tables`` with the backbones side by side: per label one table whose columns
    are each backbone's columns (4-tuples: the column and its backbone)."""
    from xmic.grid.results import backbone_names
    per = {b: label_tables(df[df["backbone"].fillna("") == b],
                           {**grid, "runs": [r for r in grid["runs"] if r.get("backbone", "") == b]},
                           metric, criterion) for b in backbone_names(grid)}
    out = []
    for i, (label, what, _, _) in enumerate(next(iter(per.values()))):
        cols, body = [], {}
        for b, tables in per.items():
            _, _, bcols, bbody = tables[i]
            cols += [(*c, b) for c in bcols]
            for m, row in bbody.items():
                body.setdefault(m, {}).update({(*c, b): v for c, v in row.items()})
        for m in body:
            body[m] = {c: body[m].get(c) for c in cols}
        out.append((label, what, cols, body))
    return out


def label_tables(df, grid: dict, metric: str, criterion: str) -> list[tuple]:
    """Per label of the grid ``(label, what, cols, body)`` of ``paper_table``."""
    from xmic.grid.results import recipe_order
    methods = recipe_order(grid, "methods")
    sources, targets = recipe_order(grid, "sources"), recipe_order(grid, "targets")
    name = next(k for k, v in METRIC_CHOICES.items() if v == metric)
    what = (f"{name} (%)" + (f", {criterion} shared/novel classes" if metric in NEEDS_CRITERION
                             else "") + ", mean ± std over seeds")
    tables = []
    scored = {(r["method"], r["label"], r["source"], t["dataset"]) for r in grid["runs"]
              for t in r["targets"]}
    base_novel = grid["recipe"].get("protocol") == "base-to-novel"
    if base_novel:
        what = ("top-1 (%) on the held-out split: base classes among base, novel among novel, "
                "their HM; trained on base classes only; mean ± std over seeds")
    for label in recipe_order(grid, "labels"):
        planned = [m for m in methods if any(r["method"] == m and r["label"] == label
                                             for r in grid["runs"])]
        if base_novel:
            from xmic.grid.base_novel_table import base_novel_table
            cols, body = base_novel_table(df, label, planned, sources)
        else:
            cols, body = paper_table(df, label, metric, criterion, planned, sources, targets,
                                     scored)
        tables.append((label, what, cols, body))
    return tables


def grid_tables(df, missing: int, grid: dict, fmt: str = "md", metric: str = "top1",
                criterion: str = "exact", ci=None, by_backbone: bool = False) -> str:
    """Every label's table of the grid in ``fmt`` (md | csv | latex); ``ci``: a function of
    the tables giving their ``grid.significance.Significance`` (intervals, significant bests)."""
    tables = (side_by_side if by_backbone else label_tables)(df, grid, metric, criterion)
    note = (f"{missing} planned score(s) missing: the grid is not finished.\n" if missing else "")
    if any(v is None or v == NA for _, _, _, body in tables for row in body.values()
           for v in row.values()):
        note += (f"–: no score (not finished, or no sample of those classes); {NA}: not scored "
                 "(the method has no classifier for that vocabulary).\n")
    if metric in NEEDS_CRITERION:
        note += lists_note(grid)
    note += vocabulary_note(grid)
    sig = ci(tables) if ci is not None else None
    if sig is not None:
        note += sig.note() + "\n"
        dropped = sum(sig.dropped.values())
        if dropped:
            note += (f"{dropped} segment(s) scored by some methods of a cell but not all (a view "
                     "they read failed there) are left out of its bootstrap.\n")
    if fmt == "csv":
        return format_csv(tables, sig, {r["method"]: (r.get("row_method", r["method"]),
                                                      r.get("backbone", ""))
                                        for r in grid["runs"]})
    if fmt == "latex":
        names = display_names(grid)
        return ("\n".join(format_latex(*t, names, sig) for t in tables)
                + "".join(f"% {line}\n" for line in note.splitlines()))
    return ("\n".join(format_markdown(*t, sig) for t in tables)
            + (f"\n{note}" if note else ""))

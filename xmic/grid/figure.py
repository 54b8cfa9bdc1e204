"""The figure of a grid: cross-dataset shared vs novel accuracy.

Input: the grid's tidy results (``xmic.grid.results``) and its plan. Output: a PNG, one panel per
label: mean over seeds with their std as error bars, one marker per method (offset a little so
that methods at one point stay apart) and one colour per source -> target, legends outside the
data, and a note under each panel for what it could not draw (not scored, no sample).
"""
from __future__ import annotations

import io

from xmic.grid.table import MARKERS, display_names, title

def _panel(ax, mine, grid: dict, label: str, methods: list, colours: dict, names: dict,
           step: float, criterion: str) -> list[str]:
    """One label's panel of ``figure``; returns what it could not draw, in words."""
    notes = []
    for i, method in enumerate(methods):
        off = (i - (len(methods) - 1) / 2) * step
        for s, t in colours:
            cell = mine[(mine["method"] == method) & (mine["source_dataset"] == s)
                        & (mine["target_dataset"] == t)]
            sh = cell[cell["metric"] == "shared"]["value"].dropna()
            nv = cell[cell["metric"] == "novel"]["value"].dropna()
            where = f"{names.get(method, method)} {title(s)}→{title(t)} ({label})"
            if cell.empty:
                if any(r["method"] == method and r["source"] == s and r["label"] == label
                       for r in grid["runs"]):
                    notes.append(f"{where}: n/a (not scored across datasets)")
                continue
            if sh.empty or nv.empty:
                notes.append(f"{where}: no sample of " + ("shared" if sh.empty else "novel")
                             + " classes")
                continue
            ax.errorbar(sh.mean() + off, nv.mean() + off,
                        xerr=sh.std(ddof=1) if len(sh) > 1 else 0,
                        yerr=nv.std(ddof=1) if len(nv) > 1 else 0,
                        fmt=MARKERS[i % len(MARKERS)], color=colours[(s, t)], capsize=3, ms=7,
                        mfc="none", mew=1.5)
    ax.set_xlabel(f"accuracy on shared classes (%) [{criterion}]")
    ax.set_ylabel("accuracy on novel classes (%)")
    ax.set_title(f"{label}: cross-dataset")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.plot([0, 100], [0, 100], "k--", lw=0.8)
    return notes


def figure(df, grid: dict, criterion: str = "exact") -> bytes:
    """PNG: cross-dataset shared vs novel accuracy per (method, source -> target), error bars
    the std over seeds, one panel per label. Colour says the source -> target pair, the marker
    the method (methods at one point are set apart by a small, stated offset); the legends sit
    outside the data; what is not drawn is said in a note under the panels."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    from matplotlib.lines import Line2D

    from xmic.grid.results import recipe_order
    labels, methods = recipe_order(grid, "labels"), recipe_order(grid, "methods")
    names = display_names(grid)
    cross = df[(df["in_dataset"] == False) & df["metric"].isin(["shared", "novel"])  # noqa: E712
               & (df["criterion"] == criterion)]
    pairs = list(dict.fromkeys((s, t) for r in grid["runs"] for t in
                               recipe_order(grid, "targets") if t != r["source"]
                               for s in [r["source"]]))
    colours = {p: f"C{i % 10}" for i, p in enumerate(pairs)}
    fig = Figure(figsize=(4.6 * max(len(labels), 1) + 2.6, 5.0))
    axes = fig.subplots(1, max(len(labels), 1), squeeze=False)[0]
    step = 1.2  # % of the axis between methods drawn at one point
    notes: list[str] = []
    for ax, label in zip(axes, labels):
        notes += _panel(ax, cross[cross["label"] == label], grid, label, methods, colours,
                        names, step, criterion)
    handles = ([Line2D([], [], marker=MARKERS[i % len(MARKERS)], ls="", color="0.3", mfc="none",
                       mew=1.5, label=names.get(m, m)) for i, m in enumerate(methods)]
               + [Line2D([], [], marker="s", ls="", color=c, label=f"{title(s)}→{title(t)}")
                  for (s, t), c in colours.items()])
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7,
                    frameon=False, title="method / pair", title_fontsize=7)
    fig.suptitle(f"grid {grid['recipe']['name']}: mean ± std over seeds "
                 f"(methods offset by {step:g} % apart)", fontsize=9)
    shown = list(dict.fromkeys(notes))
    if shown:
        fig.text(0.01, 0.01, "not drawn: " + "; ".join(shown[:6])
                 + (f"; and {len(shown) - 6} more" if len(shown) > 6 else ""),
                 fontsize=6, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if shown else 0, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()

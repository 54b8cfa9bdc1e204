"""The figure of a grid: what each method keeps on the classes it did not train on.

Input: the grid's tidy results (``xmic.grid.results``) and its plan. Output: a PNG, one panel per
label, each point a method's mean over seeds with their std as error bars: for the paper's
protocol, cross-dataset accuracy on shared (x) vs novel (y) classes per source -> target; for
``protocol: base-to-novel``, accuracy on base (x) vs novel (y) classes per dataset. One marker
per method (methods at one point set apart by a small, stated offset), one colour per pair or
dataset, legends outside the data, and a note under the panels for what was not drawn.
"""
from __future__ import annotations

import io

from xmic.grid.table import MARKERS, display_names, title


def _cross_points(df, grid: dict, label: str, methods: list, criterion: str, names: dict):
    """(colour keys, {(method, key): (xs, ys)}, notes) of the cross-dataset shared/novel panel."""
    from xmic.grid.results import recipe_order
    mine = df[(df["label"] == label) & (df["in_dataset"] == False)  # noqa: E712
              & df["metric"].isin(["shared", "novel"]) & (df["criterion"] == criterion)]
    keys = list(dict.fromkeys(f"{title(r['source'])}→{title(t)}" for r in grid["runs"]
                              for t in recipe_order(grid, "targets") if t != r["source"]))
    points, notes = {}, []
    for method in methods:
        for s, t in dict.fromkeys((r["source"], t) for r in grid["runs"]
                                  for t in recipe_order(grid, "targets") if t != r["source"]):
            key = f"{title(s)}→{title(t)}"
            cell = mine[(mine["method"] == method) & (mine["source_dataset"] == s)
                        & (mine["target_dataset"] == t)]
            where = f"{names.get(method, method)} {key} ({label})"
            if cell.empty:
                if any(r["method"] == method and r["source"] == s and r["label"] == label
                       for r in grid["runs"]):
                    notes.append(f"{where}: n/a (not scored across datasets)")
                continue
            xs = cell[cell["metric"] == "shared"]["value"].dropna()
            ys = cell[cell["metric"] == "novel"]["value"].dropna()
            if xs.empty or ys.empty:
                notes.append(f"{where}: no sample of " + ("shared" if xs.empty else "novel")
                             + " classes")
                continue
            points[(method, key)] = (xs, ys)
    return keys, points, notes


def _base_novel_points(df, grid: dict, label: str, methods: list, names: dict):
    """(colour keys, {(method, dataset): (base, novel)}, notes) of a base-to-novel panel."""
    from xmic.grid.results import recipe_order
    mine = df[(df["label"] == label) & (df["metric"] == "top1")]
    keys = [title(s) for s in recipe_order(grid, "sources")]
    points, notes = {}, []
    for method in methods:
        for s in recipe_order(grid, "sources"):
            cell = mine[(mine["method"] == method) & (mine["source_dataset"] == s)]
            xs = cell[cell["classes"] == "base"]["value"].dropna()
            ys = cell[cell["classes"] == "novel"]["value"].dropna()
            if xs.empty or ys.empty:
                if any(r["method"] == method and r["source"] == s and r["label"] == label
                       for r in grid["runs"]):
                    notes.append(f"{names.get(method, method)} {title(s)} ({label}): not "
                                 "scored yet")
                continue
            points[(method, title(s))] = (xs, ys)
    return keys, points, notes


def _panel(ax, points: dict, methods: list, colours: dict, step: float) -> None:
    for i, method in enumerate(methods):
        off = (i - (len(methods) - 1) / 2) * step
        for key, colour in colours.items():
            if (method, key) not in points:
                continue
            xs, ys = points[(method, key)]
            ax.errorbar(xs.mean() + off, ys.mean() + off,
                        xerr=xs.std(ddof=1) if len(xs) > 1 else 0,
                        yerr=ys.std(ddof=1) if len(ys) > 1 else 0,
                        fmt=MARKERS[i % len(MARKERS)], color=colour, capsize=3, ms=7,
                        mfc="none", mew=1.5)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.plot([0, 100], [0, 100], "k--", lw=0.8)


def figure(df, grid: dict, criterion: str = "exact") -> bytes:
    """PNG of the grid's panels (see the module docstring)."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    from matplotlib.lines import Line2D

    from xmic.grid.results import recipe_order
    labels, methods = recipe_order(grid, "labels"), recipe_order(grid, "methods")
    names = display_names(grid)
    base_novel = grid["recipe"].get("protocol") == "base-to-novel"
    fig = Figure(figsize=(4.6 * max(len(labels), 1) + 2.6, 5.0))
    axes = fig.subplots(1, max(len(labels), 1), squeeze=False)[0]
    step = 1.2  # % of the axis between methods drawn at one point
    notes: list[str] = []
    colours: dict = {}
    for ax, label in zip(axes, labels):
        keys, points, said = (_base_novel_points(df, grid, label, methods, names) if base_novel
                              else _cross_points(df, grid, label, methods, criterion, names))
        for k in keys:
            colours.setdefault(k, f"C{len(colours) % 10}")
        _panel(ax, points, methods, colours, step)
        notes += said
        if base_novel:
            ax.set_xlabel("accuracy on base classes (%)")
            ax.set_title(f"{label}: base-to-novel (held-out split)")
        else:
            ax.set_xlabel(f"accuracy on shared classes (%) [{criterion}]")
            ax.set_title(f"{label}: cross-dataset")
        ax.set_ylabel("accuracy on novel classes (%)")
    handles = ([Line2D([], [], marker=MARKERS[i % len(MARKERS)], ls="", color="0.3", mfc="none",
                       mew=1.5, label=names.get(m, m)) for i, m in enumerate(methods)]
               + [Line2D([], [], marker="s", ls="", color=c, label=k)
                  for k, c in colours.items()])
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7,
                    frameon=False, title="method / " + ("dataset" if base_novel else "pair"),
                    title_fontsize=7)
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

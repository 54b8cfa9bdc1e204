"""The paper's table of a grid, and one figure, from what has finished so far.

Inputs: a grid folder and its plan. Outputs: per (source dataset, label) one table (rows: the
grid's methods, ablation names included; columns per target and criterion: top-1, class-mean,
shared / novel / HM, then the HM of in-dataset and cross-dataset top-1; mean ± std over seeds,
``evaluate.table``'s layout) with a ``missing`` column counting the planned (seed, target)
scores not there yet; as md, csv or latex. ``figure``: PNG bytes of two panels, in-dataset vs
cross-dataset top-1 and shared vs novel accuracy, one point per (method, source, label).
"""
from __future__ import annotations

import io
import statistics
from pathlib import Path

from xmic.evaluate.table import build_table, format_table
from xmic.grid.state import read_metrics


def grid_metrics(grid_dir: Path, grid: dict) -> tuple[list[dict], dict]:
    """(every target's metrics found, renamed to the grid's method names; (source, label,
    method) -> number of planned scores missing)."""
    found, missing = [], {}
    for r in grid["runs"]:
        key = (r["source"], r["label"], r["method"])
        missing.setdefault(key, 0)
        for t in r["targets"]:
            m = read_metrics(Path(grid_dir) / r["dir"], t)
            if m is None:
                missing[key] += 1
            else:
                found.append({**m, "method": r["method"], "source_dataset": r["source"]})
    return found, missing


def criteria(metrics: list[dict]) -> list[str]:
    return [c for c in ("exact", "semantic") if any(f"hm_{c}" in m for m in metrics)] or ["exact"]


def grid_tables(grid_dir: Path, grid: dict, fmt: str = "md") -> str:
    metrics, missing = grid_metrics(grid_dir, grid)
    order = list(grid["recipe"]["methods"])
    parts = []
    for source in grid["recipe"]["sources"]:
        for label in grid["recipe"]["labels"]:
            mine = [m for m in metrics if m["source_dataset"] == source and m["label"] == label]
            for crit in criteria(mine):
                header, body = build_table(mine, crit) if mine else (["method", "source", "seeds"], [])
                have = {row[0] for row in body}
                body += [[name, source, "0"] + ["–"] * (len(header) - 3)
                         for name in order if name not in have and (source, label, name) in missing]
                body.sort(key=lambda row: order.index(row[0]) if row[0] in order else len(order))
                header = header + ["missing"]
                body = [row + [str(missing.get((source, label, row[0]), 0))] for row in body]
                title = f"{source} → targets, {label}, {crit} shared/novel split"
                if fmt == "md":
                    parts.append(f"### {title}\n\n" + format_table(header, body, fmt))
                else:
                    parts.append((f"% {title}\n" if fmt == "latex" else f"# {title}\n")
                                 + format_table(header, body, fmt))
    left = sum(missing.values())
    note = f"{left} planned score(s) missing: the grid is not finished." if left else ""
    return "\n".join(parts) + (("\n" + note + "\n") if note else "")


def figure(grid_dir: Path, grid: dict) -> bytes:
    """PNG: in-dataset vs cross-dataset top-1, and shared vs novel accuracy (exact), per method."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    metrics, _ = grid_metrics(grid_dir, grid)
    fig = Figure(figsize=(10, 4.2))
    (a1, a2) = fig.subplots(1, 2)
    keys = sorted({(m["method"], m["source_dataset"], m["label"]) for m in metrics})
    for method, source, label in keys:
        mine = [m for m in metrics if (m["method"], m["source_dataset"], m["label"]) ==
                (method, source, label)]
        ins = [m["top1"] for m in mine if m.get("in_dataset")]
        cross = [m["top1"] for m in mine if not m.get("in_dataset")]
        name = f"{method} ({source}, {label})"
        if ins and cross:
            a1.scatter(statistics.mean(ins), statistics.mean(cross), label=name)
        shared = [m.get("shared_exact") for m in mine if m.get("shared_exact") is not None]
        novel = [m.get("novel_exact") for m in mine if m.get("novel_exact") is not None]
        if shared and novel:
            a2.scatter(statistics.mean(shared), statistics.mean(novel), label=name)
    for ax, (x, y) in ((a1, ("in-dataset top-1 (%)", "cross-dataset top-1 (%)")),
                       (a2, ("shared classes (%)", "novel classes (%)"))):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        lim = max([1.0, *ax.get_xlim(), *ax.get_ylim()])
        ax.plot([0, lim], [0, lim], "k--", lw=0.8)
    if keys:
        a2.legend(fontsize=7, loc="best")
    fig.suptitle(f"grid {grid['recipe']['name']}: mean over seeds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()

"""Evaluation plots beside metrics.json: per-class accuracy (shared and novel coloured apart),
the confusion matrix of the most frequent classes, and the reliability of top-1 scores.

Inputs: scores [S, C], softmax probabilities [S, C], labels [S], class names, a shared mask [C].
Output: file name -> PNG bytes of ``per_class_accuracy.png``, ``confusion.png``,
``reliability.png`` (the caller writes them).
"""
from __future__ import annotations

import io

import numpy as np

from xmic.evaluate.metrics import per_class_accuracy, ranked


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


SHARED_COLOR, NOVEL_COLOR = "tab:blue", "tab:orange"


def per_class_figure(acc, labels, classes, shared, order, criterion: str, title: str) -> bytes:
    """Per-class accuracy, best first: bars coloured shared / novel (the tick labels too), each
    class's number of samples in its label, a class at 0 % marked so that it is seen, the
    legend above the axes, the axis 0-100 %."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    n = np.bincount(labels, minlength=len(classes))
    fig = Figure(figsize=(max(6, 0.25 * len(order) + 2), 4.6))
    ax = fig.subplots()
    colors = [SHARED_COLOR if shared[i] else NOVEL_COLOR for i in order]
    x = np.arange(len(order))
    ax.bar(x, acc[order], color=colors)
    zero = acc[order] == 0
    ax.scatter(x[zero], np.zeros(int(zero.sum())), marker="x", s=18,
               c=[c for c, z in zip(colors, zero) if z], zorder=3, clip_on=False)
    ax.set_xticks(x, [f"{classes[i]} ({n[i]})" for i in order], rotation=90, fontsize=6)
    for tick, c in zip(ax.get_xticklabels(), colors):
        tick.set_color(c)
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.6, max(len(order), 1) - 0.4)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xlabel("class (samples)", fontsize=7)
    ax.legend(handles=[Patch(color=SHARED_COLOR, label="shared"),
                       Patch(color=NOVEL_COLOR, label="novel"),
                       Line2D([], [], marker="x", ls="", color="k", label="0 %")],
              loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=7, frameon=False)
    ax.set_title(f"{title}\nper class, {criterion} criterion", pad=18, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def plot_all(scores, probs, labels, classes, shared, criterion: str, title: str,
             top_classes: int = 20, bins: int = 10) -> dict[str, bytes]:
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    pngs: dict[str, bytes] = {}
    pred = ranked(scores, 1)[:, 0]
    correct = pred == labels
    acc = per_class_accuracy(correct, labels, len(classes))
    present = np.flatnonzero(~np.isnan(acc))
    order = present[np.argsort(-acc[present], kind="stable")]
    pngs["per_class_accuracy.png"] = per_class_figure(acc, labels, classes, shared, order,
                                                      criterion, title)

    freq = np.bincount(labels, minlength=len(classes))
    top = np.argsort(-freq, kind="stable")[:min(top_classes, int((freq > 0).sum()))]
    keep = np.isin(labels, top)
    idx = {c: i for i, c in enumerate(top)}
    cm = np.zeros((len(top), len(top) + 1))  # last column: predicted outside these classes
    for t, p in zip(labels[keep], pred[keep]):
        cm[idx[t], idx.get(p, len(top))] += 1
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="viridis", vmin=0, vmax=1)
    names = [classes[c] for c in top]
    ax.set_xticks(range(len(top) + 1), names + ["other"], rotation=90, fontsize=6)
    ax.set_yticks(range(len(top)), names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion of the {len(top)} most frequent classes (rows sum to 1)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    pngs["confusion.png"] = _png(fig)

    conf = probs[np.arange(len(labels)), pred]
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc_b = np.bincount(which, weights=correct, minlength=bins) / np.maximum(count, 1)
    conf_b = np.bincount(which, weights=conf, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(acc_b - conf_b)) / len(labels))
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(centers[count > 0], acc_b[count > 0], width=1 / bins, edgecolor="k", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlabel("top-1 softmax score")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {100 * ece:.1f}%)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    pngs["reliability.png"] = _png(fig)
    return pngs

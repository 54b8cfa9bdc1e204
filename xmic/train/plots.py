"""Training curve: metrics.jsonl rows -> train_curve.png (loss, and accuracies per epoch)."""
from __future__ import annotations

from pathlib import Path


def plot_curve(rows: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    from matplotlib.ticker import MaxNLocator
    ep = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 3.6))
    (ax1, ax2) = fig.subplots(1, 2)
    ax1.plot(ep, [r.get("train_loss") for r in rows], marker="o", label="train loss")
    if any(r.get("heldout_loss") is not None for r in rows):
        ax1.plot(ep, [r.get("heldout_loss") for r in rows], marker="o", label="held-out loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    for key, name in (("train_top1", "train"), ("heldout_top1", "held-out"),
                      ("target_top1", "target (test data)")):
        if any(r.get(key) is not None for r in rows):
            ax2.plot(ep, [r.get(key) for r in rows], marker="o", label=name)
    best = [r["epoch"] for r in rows if r.get("selected")]
    if best:
        ax2.axvline(best[-1], color="grey", ls="--", lw=1, label=f"selected (epoch {best[-1]})")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 accuracy (%)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)  # a path or a binary file object

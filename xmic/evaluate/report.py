"""A short Markdown report of evaluated runs (the demo's ``report.md``).

Inputs: the results table (Markdown), what weights and model made the features, the world
folder. Output: the report file.
"""
from __future__ import annotations

from pathlib import Path

from xmic.files.atomic import write_text_atomic


def write_report(path: Path, table: str, weights: str, model: str, world: Path) -> None:
    weights_line = ("**Weights are random**: the numbers show the pipeline works, not what X-MIC "
                    "achieves." if weights == "random" else f"Weights: `{weights}`, model `{model}`.")
    text = (
        f"# xmic demo report\n\n{weights_line}\n\n"
        f"World: {world} (EPIC-100 and Ego4D file layouts, generated).\n\n"
        "## Results (noun, exact shared/novel split)\n\n" + table +
        "\n## Files\n\n- caches: `caches/epic`, `caches/ego4d` (`xmic cache info`)\n"
        "- runs: `runs/xmic`, `runs/zeroshot` (train_curve.png, metrics.jsonl)\n"
        "- evaluations and plots: `runs/*/eval/*/`\n\n"
        "## On real data\n\nSee the README: convert OpenAI weights, `xmic extract plan/run/text`, "
        "`xmic train`, `xmic evaluate`, `xmic evaluate table`.\n")
    write_text_atomic(Path(path), text, Path(path).parent)

"""``xmic demo``: the whole pipeline on a generated world."""
from __future__ import annotations

from pathlib import Path

import click

from xmic.cli.base import XmicCommand


@click.command(cls=XmicCommand)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True)
@click.option("--model", default=None, help="open_clip model (default: a tiny config, or "
              "ViT-B-16-quickgelu with --weights).")
@click.option("--weights", default="random", show_default=True,
              help="Weights file or local-dir:DIR; random gives meaningless features.")
@click.option("--epochs", default=15, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
              help="Extract shards as job arrays (default: in this process).")
@click.option("--slurm-set", multiple=True, metavar="KEY=VALUE",
              help="Slurm config for --executor slurm, e.g. partition=debug.")
def demo(out, model, weights, epochs, device, executor, slurm_set):
    """Generate a small egocentric world and run the real pipeline on it, end to end."""
    from xmic.demo.run import run_demo
    run_demo(out, model, weights, epochs, device, executor, slurm_set, echo=click.echo)



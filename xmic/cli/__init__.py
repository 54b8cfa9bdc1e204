"""The ``xmic`` command line: one group per pipeline stage, plus ``demo`` and ``predict``.

Inputs: command-line arguments. Outputs: whatever the stage writes, and one-line errors for any
``XmicError`` (``base.py``). This package is the only code that imports click; the commands of
each stage live in their own module and are added here, explicitly.
"""
from __future__ import annotations

import click

from xmic.cli import (cache_commands, demo_command, evaluate_commands, extract_commands,
                      grid_commands, predict_command, slurm_commands, train_commands)
from xmic.cli.base import XmicGroup


def _version(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        from xmic.provenance import describe
        click.echo(f"xmic {describe()}")
        ctx.exit()


@click.group(cls=XmicGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Print the version (and the commit of a checkout) and exit.")
def main():
    """xmic: X-MIC adapters for cross-dataset egocentric action recognition, on a feature cache.

    Stages: extract -> cache -> slurm -> train -> evaluate. Run `xmic demo` for a first look.
    """


for command in (cache_commands.cache, extract_commands.extract, slurm_commands.slurm,
                train_commands.train_cmd, evaluate_commands.evaluate, predict_command.predict,
                grid_commands.grid, demo_command.demo):
    main.add_command(command)

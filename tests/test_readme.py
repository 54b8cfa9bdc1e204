"""The README cannot rot: every `xmic ...` line of its bash blocks names a real command with
real options and valid choices (parsed by the CLI itself; paths of the reader's own data need
not exist here), and every script it names exists. The demo and test commands themselves run
in CI (`.ci/run`, test_cli's demo fixture) and the cluster walkthrough runs as
test_slurm_cluster.py / test_slurm.py."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from xmic.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    text = README.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(("xmic ", "bash ", "python ")):
                out.append(line)
    return out


def parse(args: list[str]) -> None:
    """Resolve the command and parse its options exactly as `xmic` would, without running it."""
    cmd, ctx, rest = main, click.Context(main, info_name="xmic"), list(args)
    while isinstance(cmd, click.Group):
        cmd.parse_args(ctx, rest)  # a group's own parsing (e.g. evaluate's default command)
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        cmd, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    cmd.parse_args(ctx, rest)


def test_readme_has_commands():
    cmds = readme_commands()
    assert sum(c.startswith("xmic ") for c in cmds) >= 20
    assert "bash scripts/demo.sh" in cmds and "bash scripts/test.sh" in cmds


@pytest.mark.parametrize("line", [c for c in readme_commands() if c.startswith("xmic ")])
def test_readme_xmic_line_parses(line):
    args = shlex.split(line)[1:]
    try:
        parse(args)
    except click.BadParameter as e:  # the reader's own files do not exist on this machine
        if "does not exist" not in str(e):
            raise AssertionError(f"README: `{line}`: {e.format_message()}") from None
    except click.UsageError as e:
        raise AssertionError(f"README: `{line}`: {e.format_message()}") from None


@pytest.mark.parametrize("line", [c for c in readme_commands() if not c.startswith("xmic ")])
def test_readme_scripts_exist(line):
    path = shlex.split(line)[1]
    assert (README.parent / path).exists(), f"README names {path}, which is not in the repository"

"""Every command's --help says each option's default (click's own, a flag's, or the stage
config's for an option left unset), and `xmic --version` names the version and the commit."""
from __future__ import annotations

import re

import click
from click.testing import CliRunner

import xmic
from xmic.cli import main


def commands(group: click.Group, path: list[str]):
    for name, cmd in group.commands.items():
        yield [*path, name], cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, [*path, name])


def test_every_option_of_every_command_says_its_default():
    seen = 0
    for path, cmd in commands(main, []):
        out = CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
        blocks = [b for b in re.split(r"\n  (?=-)", out.split("Options:")[-1]) if b.strip()]
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            block = next(b for b in blocks if p.opts[0] in b.split()[0].split(","))
            assert "default" in block.lower(), f"xmic {' '.join(path)} {p.opts[0]}: {block!r}"
            seen += 1
    assert seen > 120
    out = CliRunner().invoke(main, ["extract", "run", "--help"], terminal_width=200).output
    assert "[default: (256, from the config)]" in out and "[default: (off)]" in out


def test_version():
    from xmic.provenance import commit
    out = CliRunner().invoke(main, ["--version"]).output
    assert out.startswith(f"xmic {xmic.__version__}")
    if commit():
        assert f"commit {commit()[:12]}" in out and re.fullmatch(r"[0-9a-f]{40}", commit())

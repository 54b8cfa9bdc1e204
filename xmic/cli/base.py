"""What every command of the CLI shares: one-line errors instead of tracebacks.

``XmicError`` (and its subclasses) become ``error: ...`` on stderr and exit 2, or the error's own
``exit_code`` (1: the work itself failed, 130: interrupted). The CLI package is the only code
that imports click; each stage's commands parse options, call one function and print.
"""
from __future__ import annotations

import sys

import click

from xmic.config import XmicError, load_config


class UsageError(XmicError):
    """A command-line option that cannot be read."""


def _fail(e: Exception):
    click.echo(f"error: {e}", err=True)
    sys.exit(getattr(e, "exit_code", 2))  # 2: a mistake to fix; 1: the work itself failed


class RecordChoice(click.Choice):
    """The names of a record table (datasets, methods) as choices, read when an option is parsed
    or its help shown: the tables are not imported for ``xmic --help``."""

    def __init__(self, load):
        self._load = load
        super().__init__([])

    @property
    def choices(self):
        return list(self._load())

    @choices.setter
    def choices(self, value):
        pass


def dataset_kinds(importable_only: bool = False):
    from xmic.cache.datasets import DATASETS
    return [k for k, d in DATASETS.items() if d.importable or not importable_only]


def backend_names():
    """The storage backends ``CacheConfig.backend`` admits (its one list)."""
    from typing import get_args, get_type_hints

    from xmic.cache.config import CacheConfig
    return list(get_args(get_type_hints(CacheConfig)["backend"]))


def method_names():
    from xmic.train.methods import METHODS
    return list(METHODS)


class XmicGroup(click.Group):
    """Turns XmicError into a one-line message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XmicError as e:
            _fail(e)


def status_options(f):
    """``--json``, ``--watch`` and ``--interval`` of the status commands."""
    f = click.option("--interval", type=float, default=10.0, show_default=True)(f)
    f = click.option("--watch", is_flag=True, help="Refresh until nothing is running or pending.")(f)
    return click.option("--json", "as_json", is_flag=True)(f)


def cache_config(config_path, sets):
    from xmic.cache.config import CacheConfig
    return load_config(CacheConfig, config_path, sets)


def extract_config(config_path, sets, **given):
    from xmic.extract.config import ExtractConfig
    extra = [f"{k}={v}" for k, v in given.items() if v is not None]
    return load_config(ExtractConfig, config_path, [*sets, *extra])

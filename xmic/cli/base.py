"""What every command of the CLI shares: one-line errors instead of tracebacks.

``XmicError`` (and its subclasses) become ``error: ...`` on stderr and exit 2, or the error's own
``exit_code`` (1: the work itself failed, 130: interrupted). The CLI package is the only code
that imports click; each stage's commands parse options, call one function and print.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from xmic.config import XmicError, load_config


class UsageError(XmicError):
    """A command-line option that cannot be read."""


def _fail(e: Exception):
    click.echo(f"error: {e}", err=True)
    sys.exit(getattr(e, "exit_code", 2))  # 2: a mistake to fix; 1: the work itself failed


class CacheSource(click.ParamType):
    """``--cache``: a cache folder, or a published cache (``hf-hub:ORG/REPO[@REV]``,
    ``file:///PATH``). Parsing checks the form only; the command's body resolves it
    (``resolve_cache``: fetched once per content and checked, ``xmic.cache.sources``)."""
    name = "CACHE"

    def convert(self, value, param, ctx):
        from xmic.cache.sources import HUB, is_remote, parse_hub
        value = str(value)
        if value.startswith(HUB):
            try:
                parse_hub(value)
            except XmicError as e:
                self.fail(str(e), param, ctx)
        return value if is_remote(value) else Path(value)


def resolve_cache(source) -> Path:
    """A ``CacheSource`` value as a local cache folder (a published one fetched first)."""
    from xmic.cache.sources import resolve_cache as resolve
    return Path(resolve(str(source)))


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


# where an option left unset takes its default from: the stage config of each command group
CONFIG_OF = {"extract": ("xmic.extract.config", "ExtractConfig"),
             "slurm": ("xmic.extract.config", "ExtractConfig", "xmic.slurm.config", "SlurmConfig"),
             "train": ("xmic.train.config", "TrainConfig"),
             "evaluate": ("xmic.train.config", "TrainConfig"),
             "predict": ("xmic.train.config", "TrainConfig"),
             "grid": ("xmic.slurm.config", "SlurmConfig"),
             "cache": ("xmic.cache.config", "CacheConfig")}


def config_defaults(ctx) -> dict:
    """Field -> default of the stage configs of the command group ``ctx`` belongs to."""
    import dataclasses
    import importlib
    names = ctx.command_path.split()
    spec = CONFIG_OF.get(names[1] if len(names) > 1 else "", ())
    out = {}
    for mod, cls in zip(spec[::2], spec[1::2]):
        for f in dataclasses.fields(getattr(importlib.import_module(mod), cls)):
            if f.name not in out:
                value = (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
                out[f.name] = value
    return out


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return "none" if not value else ",".join(map(str, value))
    return "none" if value in (None, "") else str(value)


class XmicCommand(click.Command):
    """Shows every option's default in ``--help``: click's own, a flag's (off), or, for an
    option left unset, the stage config's (read only when help is shown)."""

    def format_options(self, ctx, formatter):
        annotate_defaults(self, ctx)
        super().format_options(ctx, formatter)


class SideFilesCommand(XmicCommand):
    """A command that reads annotations takes every dataset's side files (``--taxonomy``,
    ``--noun-classes``, ...) as options built from the dataset table (``Dataset.side_files``)
    when the command is parsed or its help shown, so ``xmic --help`` imports no table. The
    callback receives the given ones as ``side_files`` (name -> path); the dataset refuses one
    it does not take."""

    def get_params(self, ctx):
        if not any(getattr(p, "side_file", False) for p in self.params):
            from xmic.cache.datasets import DATASETS
            owners: dict = {}
            for d in DATASETS.values():
                for f in d.side_files:
                    owners.setdefault(f.name, (f, []))[1].append(d.title or d.name)
            for name, (f, titles) in owners.items():
                opt = click.Option([f"--{name.replace('_', '-')}", name],
                                   type=click.Path(path_type=Path),
                                   help=f"{' and '.join(titles)}: {f.help}")
                opt.side_file = True
                self.params.append(opt)
        return super().get_params(ctx)

    def invoke(self, ctx):
        names = [p.name for p in self.params if getattr(p, "side_file", False)]
        given = {n: ctx.params.pop(n) for n in names if n in ctx.params}
        ctx.params["side_files"] = {n: v for n, v in given.items() if v is not None}
        return super().invoke(ctx)


try:
    from click._utils import UNSET as _UNSET
except ImportError:  # click < 8.3: no sentinel, None means unset
    _UNSET = None


def annotate_defaults(cmd: click.Command, ctx) -> None:
    fields = None
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.name in ("help", "version") or p.show_default:
            continue
        if "default" in (p.help or "").lower():
            continue
        default = p.get_default(ctx, call=False)
        if default is _UNSET:  # click >= 8.3 marks "no default" with a sentinel of its own
            default = None
        if p.is_flag:
            p.show_default = "on" if default else "off"
        elif p.multiple:
            p.show_default = "none"
        elif default is not None:
            p.show_default = True
        else:
            fields = config_defaults(ctx) if fields is None else fields
            p.show_default = (f"{_shown(fields[p.name])}, from the config" if p.name in fields
                              else "none")


class XmicGroup(click.Group):
    """Turns XmicError into a one-line message instead of a traceback; its commands show their
    defaults."""
    command_class = XmicCommand

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XmicError as e:
            _fail(e)

    def format_options(self, ctx, formatter):
        annotate_defaults(self, ctx)
        super().format_options(ctx, formatter)


XmicGroup.group_class = XmicGroup


def status_options(f):
    """``--json``, ``--watch`` and ``--interval`` of the status commands."""
    f = click.option("--interval", type=float, default=10.0, show_default=True)(f)
    f = click.option("--watch", is_flag=True, help="Refresh until nothing is running or pending.")(f)
    return click.option("--json", "as_json", is_flag=True)(f)


def cache_config(config_path, sets):
    from xmic.cache.config import CacheConfig
    return load_config(CacheConfig, config_path, sets)


def extract_config(config_path, sets, base: dict | None = None, **given):
    """An ``ExtractConfig``: defaults <- ``base`` (e.g. the plan's settings) <- YAML <- --set
    <- the command's own options."""
    from xmic.extract.config import ExtractConfig
    extra = [f"{k}={v}" for k, v in given.items() if v is not None]
    return load_config(ExtractConfig, config_path, [*sets, *extra], base=base)

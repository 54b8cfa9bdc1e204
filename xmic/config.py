"""Typed, frozen stage configs: YAML file + `key=value` overrides -> dataclass instance.

Inputs: a frozen dataclass type (one per stage), an optional YAML path, and override strings
such as ``backend=hdf5`` or ``optim.lr=1e-4`` (dotted keys reach nested dataclasses).
Outputs: an instance of that type, validated (unknown keys, wrong types and values outside a
``Literal`` are errors), and its plain-dict / YAML form for writing beside every output.

Also defines ``XmicError``, the base of every error the CLI reports as a one-line message.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, get_args, get_origin

import yaml


class XmicError(Exception):
    """An error with a message meant for the user: what was wrong, where, and what to do."""


class ConfigError(XmicError):
    pass


INT_LIMIT = 2**63 - 1  # an integer field without a bound of its own still fits an int64


def bounded(default, lo, hi):
    """A config field whose value must lie in [lo, hi], checked when the config is read (before
    anything is allocated from it); the bound is stated in the error."""
    return dataclasses.field(default=default, metadata={"bounds": (lo, hi)})


def _check_bounds(cls: type, kwargs: dict, where: str) -> None:
    for f in dataclasses.fields(cls):
        if f.name not in kwargs:
            continue
        v = kwargs[f.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if "bounds" not in f.metadata and not isinstance(v, int):
            continue  # unbounded floats (lr, ...) are checked by their config's own rules
        lo, hi = f.metadata.get("bounds", (-INT_LIMIT, INT_LIMIT))
        if not lo <= v <= hi:
            raise ConfigError(f"{where}.{f.name}: {v!r} is outside the allowed range [{lo}, {hi}]")


def resolve_device(name: str):
    """``auto`` -> cuda when there is one, else cpu; ``cuda`` without a GPU is an error. Returns a
    ``torch.device`` (torch is imported here, not at module import, to keep ``xmic --help`` fast)."""
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def config_to_dict(cfg: Any, full: bool = False) -> dict:
    """Plain, YAML/JSON-safe dict of a config dataclass (tuples become lists): what is recorded.
    A config with a ``recorded(d)`` hook leaves out what it does not use (a method's unused
    groups) unless ``full``."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            d = {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return v.recorded(d) if hasattr(v, "recorded") and not full else d
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build ``cls`` from a mapping; unknown keys and bad types are errors naming the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    _check_bounds(cls, kwargs, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with ``yaml.safe_load`` (Python tags are refused)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not a plain YAML config ({str(e).splitlines()[0]}); "
                          "only mappings of plain values are allowed") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    _check_size(data, path)
    return data


MAX_YAML_VALUES = 100_000  # values once aliases are expanded; a real config holds a few hundred


def _check_size(data, path) -> None:
    """Refuse a document that expands (through YAML aliases) into more than ``MAX_YAML_VALUES``
    values, or nests deeper than 32 levels, before anything copies it."""
    count, stack = 0, [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES or depth > 32:
            raise ConfigError(f"{path}: the config expands to more than {MAX_YAML_VALUES} values "
                              "or 32 levels (nested YAML aliases?); write it out plainly")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(cls: type, path: str | Path | None = None, overrides: Iterable[str] = (),
                base: dict | None = None) -> Any:
    """Defaults of ``cls`` <- ``base`` <- YAML file at ``path`` <- ``overrides`` (``a.b=value``)."""
    data: dict = config_to_dict(cls(), full=True)
    migrate = getattr(cls, "migrate", lambda d: d)  # keys of earlier releases, in today's places
    layers = [(base or {}, "defaults")]
    if path is not None:
        layers.append((read_yaml(path), str(path)))
    for layer, where in layers:
        _merge(data, migrate(layer), cls, where)
    for text in overrides:
        keys, value = _parse_override(text)
        _merge(data, migrate(_nest(keys, value)), cls, f"--set {text}")
    return from_dict(cls, data)


def _nest(keys: list[str], value: Any) -> dict:
    out: Any = value
    for k in reversed(keys):
        out = {k: out}
    return out


def _merge(into: dict, layer: dict, cls: type, where: str) -> None:
    hints = typing.get_type_hints(cls)
    for k, v in layer.items():
        if k not in hints:
            raise ConfigError(f"{where}: unknown key {k!r}; valid keys are {sorted(hints)}")
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            _merge(into[k], v, hints[k], f"{where}.{k}")
        else:
            into[k] = v

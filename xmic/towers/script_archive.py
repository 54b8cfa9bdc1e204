"""Tensors out of a TorchScript archive without running any of it.

Input: a TorchScript archive (OpenAI's ``ViT-B-16.pt``): a zip holding ``NAME/data.pkl`` (a
pickle of the module tree), ``NAME/data/KEY`` (raw tensor storages) and ``NAME/code/`` (the
TorchScript source, whose ``__setstate__`` methods ``torch.jit.load`` would compile and run).
Output: ``{dotted attribute path: tensor}`` for every tensor attribute of every module, as
``ScriptModule.state_dict()`` would name it.

Nothing of the archive executes: ``data.pkl`` goes through an unpickler whose ``find_class``
admits only tensor rebuilding, storage types and ``OrderedDict``; every ``__torch__.*`` class
becomes an inert ``ScriptObject`` that keeps the state it was handed and runs no method; the
code folder is never read. Storage sizes are checked against the zip members before a byte is
copied.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import torch

from xmic.config import XmicError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
MAX_PICKLE_BYTES = 64 << 20  # the module tree of a ViT-L archive is well under 1 MiB


class ArchiveError(XmicError):
    pass


class ScriptObject:
    """A ``__torch__`` class instance, inert: its state is kept, none of its code runs."""
    state = None

    def __setstate__(self, state):
        self.state = state


_CLASSES: dict[str, type] = {}


def _script_class(qualname: str) -> type:
    """One inert ``ScriptObject`` subclass per archive class name (pickle's NEWOBJ needs a type)."""
    if qualname not in _CLASSES:
        _CLASSES[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname})
    return _CLASSES[qualname]


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *rest):
    """``torch._utils._rebuild_tensor_v2``'s arguments; hooks and metadata are ignored."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor whose storage is not a persistent storage id")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.zf, self.prefix = zf, prefix
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "__torch__" or module.startswith("__torch__."):
            return _script_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights "
                                     "archive (only tensors and module attributes are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            member = f"{self.prefix}data/{key}"
            try:
                info = self.zf.getinfo(member)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {member} is missing") from None
            nbytes = numel * torch.empty(0, dtype=stype.dtype).element_size()
            if info.file_size < nbytes:
                raise pickle.UnpicklingError(f"storage {member} holds {info.file_size} bytes, "
                                             f"{nbytes} expected")
            raw = bytearray(self.zf.read(member)[:nbytes])
            self.storages[key] = torch.frombuffer(raw, dtype=stype.dtype) if nbytes else \
                torch.empty(0, dtype=stype.dtype)
        return self.storages[key]


def _walk(obj, prefix: str, out: dict, depth: int = 0) -> None:
    if depth > 64:
        raise ArchiveError("module tree deeper than 64 levels")
    if isinstance(obj, ScriptObject):
        if isinstance(obj.state, dict):
            for k, v in obj.state.items():
                if isinstance(k, str):
                    _walk(v, f"{prefix}{k}.", out, depth + 1)
    elif isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj


def read_archive_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every named tensor attribute of a TorchScript archive, nothing executed."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"{path}: not a TorchScript archive (not a zip file: {e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise ArchiveError(f"{path}: not a TorchScript archive (no single NAME/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        if zf.getinfo(pkls[0]).file_size > MAX_PICKLE_BYTES:
            raise ArchiveError(f"{path}: {pkls[0]} is larger than {MAX_PICKLE_BYTES >> 20} MiB")
        try:
            root = _ArchiveUnpickler(zf.read(pkls[0]), zf, prefix).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, RuntimeError, zipfile.BadZipFile, OSError) as e:
            raise ArchiveError(f"{path}: refused: {e}") from None
    out: dict[str, torch.Tensor] = {}
    _walk(root, "", out)
    return out

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
copied, and a storage is read only as far as its tensor needs (a small member that inflates
to gigabytes is never inflated); the storages together are bounded by ``max_bytes`` (the
caller's expected model size); a tensor must lie inside its storage without overlapping itself
(a stride-0 view of a few bytes would be gigabytes once copied); the module tree is walked
visiting at most ``MAX_NODES`` nodes (a tree sharing children through the pickle memo would
otherwise be visited 2^depth times).
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
MAX_NODES = 200_000  # attribute nodes of the module tree (ViT-L/14: a few thousand)


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
    """``torch._utils._rebuild_tensor_v2``'s arguments; hooks and metadata are ignored. The
    view must lie inside its storage and not overlap itself (weights never do)."""
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("a tensor whose storage is not a persistent storage id")
    size, stride, offset = tuple(int(x) for x in size), tuple(int(x) for x in stride), int(offset)
    if len(size) != len(stride) or any(x < 0 for x in (*size, *stride, offset)):
        raise pickle.UnpicklingError(f"a tensor of size {size} and stride {stride} is malformed")
    numel = 1
    for n in size:
        numel *= n
    if numel and (numel > storage.numel() - offset
                  or offset + sum((n - 1) * st for n, st in zip(size, stride)) >= storage.numel()
                  or any(st == 0 and n > 1 for n, st in zip(size, stride))):
        raise pickle.UnpicklingError(f"a tensor of size {list(size)} (stride {list(stride)}) "
                                     f"does not fit its storage of {storage.numel()} values "
                                     "without overlapping itself")
    return storage.as_strided(size, stride, offset)


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, max_bytes: int | None):
        super().__init__(io.BytesIO(data))
        self.zf, self.prefix, self.max_bytes = zf, prefix, max_bytes
        self.storages: dict[str, torch.Tensor] = {}
        self.read_bytes = 0

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
            self.read_bytes += nbytes
            if self.max_bytes is not None and self.read_bytes > self.max_bytes:
                raise pickle.UnpicklingError(f"its storages hold more than {self.max_bytes} "
                                             "bytes, more than the model's weights need")
            with self.zf.open(member) as f:  # only what the tensor needs is inflated
                raw = bytearray(f.read(nbytes))
            if len(raw) != nbytes:
                raise pickle.UnpicklingError(f"storage {member} ends after {len(raw)} of "
                                             f"{nbytes} bytes")
            self.storages[key] = torch.frombuffer(raw, dtype=stype.dtype) if nbytes else \
                torch.empty(0, dtype=stype.dtype)
        return self.storages[key]


def _walk(root, out: dict) -> None:
    """Every tensor attribute below ``root`` by its dotted path; at most ``MAX_NODES`` nodes
    are visited, counting every path (shared children count once per path)."""
    stack, visited = [(root, "", 0)], 0
    while stack:
        obj, prefix, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES or depth > 64:
            raise ArchiveError(f"module tree of more than {MAX_NODES} nodes or 64 levels (a "
                               "tree sharing its children, or not a model's)")
        if isinstance(obj, ScriptObject) and isinstance(obj.state, dict):
            stack.extend((v, f"{prefix}{k}.", depth + 1) for k, v in reversed(obj.state.items())
                         if isinstance(k, str))
        elif isinstance(obj, torch.Tensor):
            out[prefix[:-1]] = obj


def read_archive_tensors(path: str | Path, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Every named tensor attribute of a TorchScript archive, nothing executed; its storages
    may hold at most ``max_bytes``."""
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
            root = _ArchiveUnpickler(zf.read(pkls[0]), zf, prefix, max_bytes).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, RuntimeError, zipfile.BadZipFile, OSError) as e:
            raise ArchiveError(f"{path}: refused: {e}") from None
    out: dict[str, torch.Tensor] = {}
    try:
        _walk(root, out)
    except ArchiveError as e:
        raise ArchiveError(f"{path}: refused: {e}") from None
    return out

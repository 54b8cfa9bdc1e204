"""The restricted unpickler: plain data and numpy arrays, nothing that can run code.

Input: a pickle file written by another tool (X-MIC's feature pickles, its hand-box pickle).
Output: the unpickled object, when it holds only dicts, lists, tuples, strings, numbers and
numpy arrays; any other global is refused (``CacheError`` naming the file and the global).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

from xmic.cache.paths import CacheError

# (module, name) pairs a numpy array or scalar needs to unpickle; nothing here runs user code.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles carry array bytes as latin-1 strings
    ("collections", "OrderedDict"),
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside ``SAFE_GLOBALS``: loading it could run code."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return super().find_class(module, name)
        raise ForbiddenGlobal(
            f"global '{module}.{name}' is not allowed: only dicts, lists, tuples, strings, "
            "numbers and numpy arrays may appear in a feature pickle")


def safe_load_pickle(path: Path):
    """Unpickle ``path`` admitting only plain data and numpy arrays; errors name the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(io.BufferedReader(f, 1 << 20)).load()
    except FileNotFoundError:
        raise CacheError(f"{path}: pickle not found") from None
    except ForbiddenGlobal as e:
        raise CacheError(f"{path}: refused: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, OSError, MemoryError) as e:
        raise CacheError(f"{path}: not a readable feature pickle ({type(e).__name__}: {e})") from None

"""Vocabularies: class names in order and their text embeddings [C, D].

Inputs: a ``Cache``, a name (``noun``, ``verb``, ...), class names, an embedding array [C, D]
(or files: a class list and a ``.npy`` / torch file loaded with ``weights_only=True``), the prompt
and a fingerprint. Output: ``vocab/NAME/{vocab.json, embeddings.npy}`` committed atomically
(``vocab.json`` also holds each class's prompt name and full prompt text, and ``label_offset``
when classes precede label id 0, as the empty class of X-MIC's released EGTEA vocabulary), and
``Vocab`` when loaded (the checksum is checked on every load).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmic.cache import fingerprint as fpmod
from xmic.cache.backends import array_checksum
from xmic.files.atomic import (commit_dir, make_dirs, remove_tree, rename, tmp_name,
                                     write_json_atomic, write_new)
from xmic.cache.paths import CacheError, read_cache_json, vocab_dir, EMBEDDINGS, VOCAB_JSON
from xmic.cache.cache_folder import Cache
from xmic.cache.datasets import duplicate_prompts, normalize_name, prompt_names


@dataclass
class Vocab:
    name: str
    classes: list[str]      # raw class keys, in id order (as the annotations name them)
    embeddings: np.ndarray  # [C, D] float32
    prompt: str
    fingerprint: dict
    source: dict = field(default_factory=dict)  # where names and (extracted) model came from
    names: list[str] = field(default_factory=list)  # what goes into the prompt, shown to users
    label_offset: int = 0  # classes before label id 0 (a released vocabulary's empty class)

    def __post_init__(self):
        if not self.names:
            self.names = [normalize_name(c) for c in self.classes]  # vocabularies made before

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def prompts(self) -> list[str]:
        return [self.prompt.format(n) for n in self.names]


def template_problem(prompt) -> str | None:
    """Why a prompt template cannot be used (None: it can): it must hold ``{}`` exactly once
    and no other brace, since it becomes a format string (``{0.__class__}``, ``{x}`` or
    ``{}{}`` would fail or read attributes)."""
    rest = prompt.replace("{}", "", 1) if isinstance(prompt, str) else "{"
    if prompt.count("{}") != 1 or "{" in rest or "}" in rest:
        return (f"prompt {prompt!r} must hold '{{}}' (the class name) exactly once and no "
                "other brace, e.g. 'a photo of a {}'")
    return None


def check_template(prompt, where: str) -> str:
    """``prompt``, refused (``CacheError`` naming ``where``) when ``template_problem`` says so."""
    why = template_problem(prompt)
    if why:
        raise CacheError(f"{where}: {why}")
    return prompt


def check_prompts(name: str, classes: list[str], names: list[str], prompt: str) -> None:
    """Two classes whose prompt texts are equal get equal embeddings: never told apart."""
    dup = duplicate_prompts(classes, [prompt.format(n) for n in names])
    if dup:
        a, b, text = dup[0]
        raise CacheError(f"vocabulary {name}: classes {a!r} and {b!r} both become the prompt "
                         f"{text!r} ({len(dup)} such pair(s)); they could never be told apart: "
                         "give them distinct names")


def check_embeddings(emb, n_classes: int, where: str) -> np.ndarray:
    a = np.asarray(emb)
    if a.ndim != 2:
        raise CacheError(f"{where}: expected an array [classes, D], got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise CacheError(f"{where}: expected floating-point embeddings, got dtype {a.dtype}")
    if a.shape[1] < 1:
        raise CacheError(f"{where}: embeddings of width {a.shape[1]} cannot be used; nothing written")
    if a.shape[0] != n_classes:
        raise CacheError(f"{where}: {a.shape[0]} embeddings for {n_classes} class names; "
                         "the class list and the embeddings must be in the same order and length")
    if not np.isfinite(a).all():
        rows = np.flatnonzero(~np.isfinite(a).all(axis=1))[:5].tolist()
        raise CacheError(f"{where}: NaN or Inf in embedding rows {rows}")
    return np.ascontiguousarray(a, dtype=np.float32)


def add_vocab(cache: Cache, name: str, classes: list[str], embeddings, prompt: str,
              fingerprint: dict, replace: bool = False, source: dict | None = None,
              names: list[str] | None = None, label_offset: int = 0) -> Vocab:
    """Write a vocabulary; ``names`` (the prompt text of each class) default to the cache's
    dataset rule (``datasets.prompt_names``). Two classes with one prompt text are refused."""
    check_template(prompt, f"vocabulary {name}")
    emb = check_embeddings(embeddings, len(classes), f"vocabulary {name}")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})[:5]
        raise CacheError(f"vocabulary {name}: duplicate class names {dup}")
    names = list(names) if names is not None else prompt_names(cache.dataset, classes)
    if len(names) != len(classes):
        raise CacheError(f"vocabulary {name}: {len(names)} prompt names for {len(classes)} classes")
    check_prompts(name, classes, names, prompt)
    final = vocab_dir(cache.root, name)
    if final.exists() and not replace:
        raise CacheError(f"{cache.root}: vocabulary {name!r} exists; pass --replace to overwrite it")
    root = cache.root
    make_dirs(final.parent, root)
    tmp = final.parent / ("." + tmp_name(name))
    make_dirs(tmp, root)
    try:
        buf = io.BytesIO()
        np.save(buf, emb, allow_pickle=False)
        write_new(tmp / EMBEDDINGS, buf.getbuffer(), root)
        write_json_atomic(tmp / VOCAB_JSON, {
            "name": name, "classes": list(classes), "names": names,
            "prompts": [prompt.format(n) for n in names], "prompt": prompt, "dim": int(emb.shape[1]),
            "dtype": "float32", "checksum": array_checksum(emb), "fingerprint": fingerprint,
            "fingerprint_id": fpmod.fingerprint_id(fingerprint), "source": source or {},
            **({"label_offset": int(label_offset)} if label_offset else {})}, root)
        if final.exists():
            old = final.parent / ("." + tmp_name(name + ".old"))
            rename(final, old, root)
            remove_tree(old, root)
        if not commit_dir(tmp, final, root):
            raise CacheError(f"vocabulary {name!r} was written by another process meanwhile")
    finally:
        remove_tree(tmp, root)
    return Vocab(name, list(classes), emb, prompt, fingerprint, dict(source or {}), names,
                 int(label_offset))


def vocab_names(cache: Cache) -> list[str]:
    root = cache.root / "vocab"
    return sorted(p.name for p in root.iterdir() if (p / VOCAB_JSON).exists()) if root.is_dir() else []


def load_vocab(cache: Cache, name: str) -> Vocab:
    d = vocab_dir(cache.root, name)
    if not (d / VOCAB_JSON).exists():
        raise CacheError(f"{cache.root}: no vocabulary {name!r} (have {vocab_names(cache)}); add it "
                         "with `xmic cache import-text` or extraction")
    meta = read_cache_json(d / VOCAB_JSON, f"vocabulary {name}")
    check_template(meta.get("prompt", "{}"), str(d / VOCAB_JSON))
    try:
        emb = np.load(d / EMBEDDINGS, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(f"{d / EMBEDDINGS}: unreadable ({e})") from None
    if array_checksum(emb) != meta.get("checksum"):
        raise CacheError(f"{d / EMBEDDINGS}: checksum differs from vocab.json; the file is "
                         "damaged, re-run import-text or extraction")
    offset = meta.get("label_offset", 0)
    if not isinstance(offset, int) or not 0 <= offset < len(meta["classes"]):
        raise CacheError(f"{d / VOCAB_JSON}: label_offset {offset!r} is not a number of classes")
    return Vocab(name, meta["classes"], emb, meta.get("prompt", ""), meta.get("fingerprint", {}),
                 meta.get("source") or {}, list(meta.get("names") or []), offset)


MAX_VALUES = 1 << 28  # a vocabulary is at most ~10^5 classes x 2048 dims; more is not text


def _check_shape(shape, path, classes: int | None, widths) -> None:
    """A vocabulary's [C, D] before a value of it is copied: its classes, a cache view's width."""
    shape = tuple(int(x) for x in shape)
    if len(shape) != 2:
        raise CacheError(f"{path}: expected an array [classes, D], got shape {list(shape)}")
    if classes is not None and shape[0] != classes:
        raise CacheError(f"{path}: {shape[0]} embeddings for {classes} class names; the class "
                         "list and the embeddings must be in the same order and length")
    if widths and shape[1] not in widths:
        raise CacheError(f"{path}: embeddings of width {shape[1]}, but the cache's views have "
                         f"width {sorted(widths)}; text and image embeddings come from one model")
    if shape[0] * shape[1] > MAX_VALUES:
        raise CacheError(f"{path}: shape {list(shape)} is more than a vocabulary holds "
                         f"({MAX_VALUES} values); refused before reading it")


def read_embeddings_file(path: Path, key: str | None = None, classes: int | None = None,
                         widths=None) -> np.ndarray:
    """[C, D] from ``.npy`` (no pickles) or a torch file (``weights_only=True``; a dict needs
    key), its shape checked (``classes`` rows, a width among ``widths``, a bounded size) before
    any value is copied: a file's header may claim more than it holds, and a torch tensor may
    be a stride-0 view of a few bytes."""
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: embeddings file not found")
    if path.suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, EOFError, OSError) as e:
            raise CacheError(f"{path}: not a plain .npy array ({type(e).__name__}: "
                             f"{e or 'empty file'})") from None
        _check_shape(a.shape, path, classes, widths)
        return np.array(a)
    import torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        first = (str(e).splitlines() or ["empty or truncated file"])[0][:200]
        raise CacheError(f"{path}: refused or unreadable torch file ({type(e).__name__}: "
                         f"{first}); only plain tensors are accepted") from None
    if isinstance(obj, dict):
        if key is None or key not in obj:
            raise CacheError(f"{path}: holds a dict with keys {sorted(map(str, obj))[:20]}; "
                             "choose one with --key")
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise CacheError(f"{path}: expected a tensor, got {type(obj).__name__}")
    _check_shape(obj.shape, path, classes, widths)
    return obj.detach().float().numpy()

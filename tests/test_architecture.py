"""The house rules of docs/architecture.md, checked on the source: which package may import which,
no import cycle between modules (imports inside functions included), click only in the CLI, submitit only in xmic/slurm, the model
code on torch alone, no module over 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xmic"

# package -> the xmic packages it may import (the ground floor, config.py, provenance.py and
# files/, is shared by all and imports nothing of xmic but config)
GROUND = {"config", "files", "provenance"}
ALLOWED = {
    "files": set(),
    "cache": set(),
    "towers": {"cache"},
    "extract": {"towers", "cache"},
    "slurm": {"extract", "towers", "cache"},
    "train": {"towers", "cache"},
    "evaluate": {"train", "towers", "cache", "extract"},
    "grid": {"train", "evaluate", "slurm", "towers", "cache"},
    "demo": {"extract", "slurm", "train", "evaluate", "towers", "cache"},
    "cli": {"cache", "towers", "extract", "slurm", "train", "evaluate", "grid", "demo"},
}


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules imported by ``path``; ``from pkg import sub`` counts as ``pkg.sub`` when ``sub`` is
    a module (importing it does not run a cycle through ``pkg``), else as ``pkg``."""
    mods = modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            found |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            for a in n.names:
                sub = f"{n.module}.{a.name}"
                found.add(sub if sub in mods else n.module)
    return found


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "xmic" else None


def test_packages_import_only_downward():
    bad = []
    for name, path in modules().items():
        src = package(name)
        if src is None or src in ("config", "provenance"):
            continue
        for imp in imports(path, top_level_only=False):
            dst = package(imp)
            ground = dst in ("config", "provenance") or (dst == "files" and src != "files")
            if dst and dst != src and not ground and dst not in ALLOWED.get(src, set()):
                bad.append(f"{name} imports {imp}")
    assert not bad, bad


def test_no_import_cycle_between_modules():
    """Imports inside functions count too: a circle hidden by a deferred import is a circle."""
    mods = modules()
    graph = {m: {i for i in imports(p, top_level_only=False) if i in mods and i != m}
             for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2
    for m in graph:
        if m not in state:
            visit(m, [m])


def test_third_party_boundaries_and_sizes():
    for name, path in modules().items():
        found = imports(path, top_level_only=False)
        if any(i == "click" or i.startswith("click.") for i in found):
            assert name.startswith("xmic.cli"), f"{name} imports click"
        if any(i == "submitit" or i.startswith("submitit.") for i in found):
            assert name.startswith("xmic.slurm"), f"{name} imports submitit"
        n = len(path.read_text().splitlines())
        assert n <= 400, f"{path} has {n} lines"
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no docstring"
    for f in ("model.py", "prompt_model.py"):
        model = imports(PKG / "train" / f, top_level_only=False)
        assert {i.split(".")[0] for i in model} <= {"torch", "math", "__future__"}, (f, model)


def test_evaluation_uses_extraction_for_raw_clips_only():
    """evaluate -> extract is allowed for one thing: embedding a raw clip (predict); frozen
    towers come from xmic/towers, below both stages."""
    used = {i for name, path in modules().items() if name.startswith("xmic.evaluate")
            for i in imports(path, top_level_only=False) if package(i) == "extract"}
    assert used <= {"xmic.extract.clip_embed"}, used
    train = {i for name, path in modules().items() if name.startswith("xmic.train")
             for i in imports(path, top_level_only=False)}
    assert not any(i.startswith(("open_clip", "timm")) for i in train), "train loads towers via towers/"

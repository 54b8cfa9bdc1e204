"""The README cannot rot: every `xmic ...` line of its bash blocks names a real command with
real options and valid choices (parsed by the CLI itself; paths of the reader's own data need
not exist here), every script it names exists, and the training, evaluation and prediction
blocks run verbatim, in order, on the demo's caches (only the reader's EPIC frame folder is
mapped to a generated one). The demo and test commands run in CI (`.ci/run`, the demo
fixture); the cluster walkthrough's steps run in test_slurm_cluster.py / test_slurm.py."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest

from xmic.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(section: str | None = None) -> list[str]:
    """Command lines of the README's bash blocks (continuations joined, comments cut), of the
    whole README or of the ``## `` section whose title starts with ``section``."""
    text = README.read_text()
    if section is not None:
        parts = [p for p in re.split(r"^## ", text, flags=re.M) if p.startswith(section)]
        assert parts, f"README has no section {section!r}"
        text = parts[0]
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
    except click.exceptions.Exit as e:  # an eager option such as --version did its work
        assert e.exit_code == 0, line
    except click.BadParameter as e:  # the reader's own files do not exist on this machine
        if "does not exist" not in str(e):
            raise AssertionError(f"README: `{line}`: {e.format_message()}") from None
    except click.UsageError as e:
        raise AssertionError(f"README: `{line}`: {e.format_message()}") from None


@pytest.mark.parametrize("line", [c for c in readme_commands() if not c.startswith("xmic ")])
def test_readme_scripts_exist(line):
    path = shlex.split(line)[1]
    assert (README.parent / path).exists(), f"README names {path}, which is not in the repository"


def test_training_evaluation_prediction_blocks_run_verbatim(demo_out, tmp_path):
    import shutil

    from helpers import run_xmic
    from xmic.cache import Cache
    from xmic.cache.vocab import load_vocab
    from xmic.evaluate.classes import derive_shared
    out, _ = demo_out
    shutil.copytree(out / "caches", tmp_path / "caches")
    world = out / "world"
    shutil.copy(sorted((world / "ego4d" / "clips").glob("*.mp4"))[0], tmp_path / "clip.mp4")
    frames = sorted((world / "epic").glob("P*/rgb_frames/*"))[0]
    # X-MIC's class-split lists for Ego4D (target) from EPIC (source), as the reader has them
    anno = tmp_path / "anno"
    anno.mkdir()
    target = load_vocab(Cache.open(tmp_path / "caches" / "ego4d"), "noun").classes
    source = load_vocab(Cache.open(tmp_path / "caches" / "epic"), "noun").classes
    shared = derive_shared(source, target)["exact"]
    for part, keep in (("common", True), ("non_common", False)):
        names = [n for n, s in zip(target, shared) if s == keep]
        (anno / f"ego_epic_{part}_exact_noun.txt").write_text("\n".join(names) + "\n")
    mapped = {"/data/EPIC/P01/rgb_frames/P01_11": str(frames)}
    lines = [*readme_commands("Training on cached features"), *readme_commands("Evaluation"),
             *readme_commands("Predicting on any clip")]
    assert len(lines) >= 12
    for line in lines:
        args = [mapped.get(a, a) for a in shlex.split(line)[1:]]
        cp = run_xmic(*args, cwd=tmp_path, check=False)
        assert cp.returncode == 0, f"README: `{line}` failed:\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
    table = run_xmic("evaluate", "table", "runs/epic-noun", "runs/epic-noun-zs", "--criterion",
                     "exact", "--format", "md", cwd=tmp_path).stdout
    assert "| xmic |" in table and "| zeroshot |" in table
    r = json.loads(run_xmic(*[mapped.get(a, a) for a in shlex.split(lines[-1])[1:]],
                            cwd=tmp_path).stdout)
    assert r["frames"] > 0 and len(r["top"]) == 5 and {"class", "score", "prob"} <= set(r["top"][0])


def test_from_data_to_table1_block_runs_on_a_generated_world(tmp_path, monkeypatch):
    """The README's path from /data to Table 1, verbatim on generated data and end to end (tars,
    EGTEA's shipped layout and clip-numbered pickles, the plan's coverage lines, the grid with
    X-MIC's lists and EGTEA's derived ones, its table): the reader's paths mapped to it, the tiny
    model and an offline hub cache standing in for ViT-B/16 and OpenAI's weights, the CPU for
    the GPU, the grid in-process for Slurm, one seed of 2 epochs for three of 15."""
    from data_world import make_data
    from helpers import make_hub, run_xmic
    from xmic.towers.encoders import TINY_CONFIG
    make_hub(tmp_path, monkeypatch)
    mapped = {k: str(v) for k, v in make_data(tmp_path).items()}
    mapped.update({"ViT-B-16-quickgelu": str(TINY_CONFIG), "openai": "hf-hub:xmic-test/tiny",
                   "~/weights/vit-b-16-openai.safetensors": str(tmp_path / "w.safetensors"),
                   "cuda": "cpu", "8": "0", "0,1,2": "0", "slurm": "inprocess",
                   "partition=gpu": "timeout_min=5"})
    lines = readme_commands("Extraction")
    lines = lines[:lines.index(next(ln for ln in lines if ln.startswith("xmic grid table"))) + 1]
    assert len(lines) >= 15 and lines[0].startswith("xmic extract fetch-weights")
    outs = []
    for line in lines:
        args = [mapped.get(a, a) for a in shlex.split(line)[1:]]
        assert args[:2] != ["extract", "run"] or "--model" in args, line
        if args[:2] == ["grid", "plan"]:
            args += ["--set", "epochs=2"]
        cp = run_xmic(*args, cwd=tmp_path, check=False)
        assert cp.returncode == 0, f"README: `{line}` failed:\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
        outs.append(cp.stdout)
    plans = [o for o in outs if "coverage (" in o]
    assert len(plans) == 5 and all("hand boxes (" in o and "(100.0%)" in o for o in plans), plans
    assert all("(100.0%) have a hand above hand_score" in o for o in plans), plans
    assert "clip pickles numbered from 0 over the clip (3)" in plans[-1], plans[-1]
    runs = [o for o in outs if "hand-crop frames" in o]
    assert len(runs) == 3 and all("frames (0.0%) fell back" in o for o in runs), runs
    assert "hand boxes (100doh)" in plans[-1] and "hand boxes (epic-100)" in plans[0]
    grid_plan = next(o for o in outs if "recipe paper-egtea" in o)
    assert "recipe paper-egtea, 24 runs, 64 evaluations" in grid_plan, grid_plan
    derived = grid_plan.split("derived class lists (")[1].split("\n")[0]
    assert "egtea_epic_common_exact_noun.txt" in derived and "ego_epic" not in derived, derived
    assert "24 done, 0 running, 0 failed, 0 pending" in outs[-2], outs[-2]
    table = outs[-1]
    assert "| method | EPIC→EPIC | EPIC→Ego4D | EPIC→EGTEA |" in table and "| xmic |" in table
    assert "–" not in table.split("| linear |")[0], table  # every open-vocabulary score exists

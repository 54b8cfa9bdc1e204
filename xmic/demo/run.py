"""``xmic demo``: the real pipeline on a generated world, end to end, in six steps.

Inputs: an output folder, the model and weights (random by default: a tiny config), epochs,
device, and optionally a job-array executor for extraction. Outputs in the folder: ``world/``
(generated data), ``caches/{epic,ego4d}``, ``runs/{xmic,coop,zeroshot}`` with their evaluations and
plots, ``report.md``; returns the results table. Each step is announced once, through ``echo``.
The demo orchestrates every stage, as the CLI does: it imports extract, slurm, train, evaluate.
"""
from __future__ import annotations

import time
from pathlib import Path

from xmic.cache import Cache, CacheConfig
from xmic.files.atomic import refuse_links_below, remove_tree, write_text_atomic
from xmic.cache.verify import verify
from xmic.config import XmicError, load_config
from xmic.demo.world import make_world
from xmic.towers.encoders import TINY_CONFIG


class DemoError(XmicError):
    """A demo folder that is not the demo's, or a demo cache that fails verification."""


STEPS = 6
METHODS = ("xmic", "coop", "zeroshot")
MARKER = ".xmic-demo"  # written first: the folder is a demo's, which a later demo may redo
DEMO_NAMES = {MARKER, "world", "caches", "runs", "report.md"}


def claim_demo_folder(out: Path) -> None:
    """The demo removes and rewrites what it made; it refuses a folder holding anything else
    (a folder of the user's, or one with other files beside a previous demo's), and links."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file; give a new folder for the demo")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and (MARKER not in names or names - DEMO_NAMES):
            other = sorted(names - DEMO_NAMES) or sorted(names)
            raise DemoError(f"--out {out} holds {', '.join(other[:3])}"
                            f"{' ...' if len(other) > 3 else ''}, which the demo did not make; "
                            "give a new (or empty) folder, the demo rewrites its own")
    for sub, own in (("runs", METHODS), ("caches", ("epic", "ego4d"))):
        extra = sorted(p.name for p in (out / sub).iterdir()) if (out / sub).is_dir() else []
        extra = [n for n in extra if n not in own]
        if extra:
            raise DemoError(f"--out {out}: {sub}/ holds {', '.join(extra[:3])}"
                            f"{' ...' if len(extra) > 3 else ''}, which the demo did not make; "
                            "move it out, or give a new folder (the demo rewrites its own)")
    refuse_links_below(out)  # the demo rewrites its world, runs and report in place
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        write_text_atomic(out / MARKER, "made by xmic demo; rewritten by the next one\n", out)
TINY = TINY_CONFIG


def run_demo(out: Path, model: str | None = None, weights: str = "random", epochs: int = 15,
             device: str = "auto", executor: str | None = None, slurm_set=(), echo=print) -> str:
    from xmic.evaluate.report import write_report
    from xmic.evaluate.run import evaluate_run
    from xmic.evaluate.table import build_table, collect, format_table
    from xmic.train.config import TrainConfig
    from xmic.train.loop import train
    out, t0 = Path(out), time.time()
    claim_demo_folder(out)

    def step(i: int, text: str) -> None:
        echo(f"[{i}/{STEPS}] {text}")
    model = model or (str(TINY) if weights == "random" else "ViT-B-16-quickgelu")
    if weights == "random":
        echo("NOTE: the model weights are RANDOM (no --weights): every number below only shows "
             "that the pipeline runs. For real features: xmic extract convert-weights "
             "ViT-B-16.pt w.safetensors, then xmic demo --weights w.safetensors (see README).")
    extract_shards = job_array_extractor(executor, slurm_set, device, echo) if executor else None
    epic, ego = extract_world(out, model, weights, device, step, extract_shards)
    runs = out / "runs"
    for method in METHODS:  # its own runs only (claim_demo_folder refused any other)
        remove_tree(runs / method, out)
    for method in METHODS:
        tc = load_config(TrainConfig, None, [f"method={method}", "label=noun", f"epochs={epochs}",
                                             "batch_size=8", f"device={device}",
                                             "heldout_fraction=0.2", "optim.warmup_epochs=2"])
        train(epic, tc, runs / method, echo=lambda *a: None)
    step(5, f"trained X-MIC and CoOp ({epochs} epochs, held-out selection) and zero-shot on "
            "EPIC train")
    for method in METHODS:
        evaluate_run(runs / method, epic, "validation", device=device)
        evaluate_run(runs / method, ego, "val", device=device)
    table = format_table(*build_table(collect([runs]), "exact"), "md")
    step(6, "evaluated in-dataset (EPIC validation) and cross-dataset (Ego4D val):\n" + table)
    write_report(out / "report.md", table, weights, model, out / "world")
    echo(f"report: {out / 'report.md'}; plots: {runs}/*/eval/*/*.png; done in "
         f"{time.time() - t0:.0f}s")
    return table


def job_array_extractor(executor: str, slurm_set, device: str, echo):
    """The demo's shard extraction as job arrays: (cache, config) -> summary."""
    from xmic.slurm.config import SlurmConfig
    from xmic.slurm.submit import extract_and_wait
    slu = load_config(SlurmConfig, None, [f"executor={executor}", "cpus_per_task=1", "mem_gb=4",
                                          "timeout_min=20", "array_parallelism=2",
                                          f"gpus_per_task={int(device == 'cuda')}", *slurm_set])

    def extract_shards(cache, cfg):
        echo(f"      extracting {cache.name} as {slu.executor} jobs ...")
        return extract_and_wait(cache, cfg, slu, echo=echo)
    return extract_shards


def extract_world(out: str | Path, model: str, weights: str, device: str, step,
                  extract_shards=None) -> tuple[Path, Path]:
    """Generate the world in ``out/world``, plan and extract it into ``out/caches/{epic,ego4d}``
    (full frames, hand crops, vocabularies), and verify both caches deeply. ``extract_shards``
    (cache, config) -> summary replaces the in-process shard extraction (e.g. job arrays)."""
    from xmic.extract.config import ExtractConfig
    from xmic.towers.encoders import load_encoder
    from xmic.extract.pipeline import run_shards
    from xmic.cache.info import fallback_line
    from xmic.extract.coverage import usable_line
    from xmic.extract.planning import PlanPolicy, SplitSource, plan
    from xmic.extract.vocabularies import extract_text
    out = Path(out)
    w = make_world(out / "world")
    step(1, f"generated a world in {out / 'world'}: EPIC-layout source ({w['segments']}) and "
         f"Ego4D-layout target ({w['ego4d_actions']} actions), partly shared vocabularies")
    epic, ego = out / "caches" / "epic", out / "caches" / "ego4d"
    small = CacheConfig(shard_segments=12)
    usable = []
    for split in ("train", "validation"):
        p = plan(epic, SplitSource("epic", w["epic"] / f"EPIC_100_{split}.csv", w["epic"], split,
                                   boxes=w["epic"] / "detections"), cache_config=small,
                 policy=PlanPolicy(inputs="changed"))
        usable.append(usable_line("epic", split, p["coverage"], p["settings"]["hand_score"]))
    ego_val = SplitSource("ego4d", w["ego4d"] / "fho_lta_val.json", w["ego4d"] / "clips", "val",
                          boxes=w["ego4d"] / "hand-objects",
                          side_files={"taxonomy": w["ego4d"] / "fho_lta_taxonomy.json"})
    p = plan(ego, ego_val, cache_config=small,
             policy=PlanPolicy(inputs="changed"))  # a demo folder copied elsewhere re-extracts
    usable.append(usable_line("ego4d", "val", p["coverage"], p["settings"]["hand_score"]))
    step(2, "planned EPIC train/validation and Ego4D val into shards\n  "
         + "\n  ".join(usable))
    cfg = ExtractConfig(model=model, weights=weights, device=device, workers=2, batch_size=128)
    enc = load_encoder(cfg.model, cfg.weights, device, cfg.precision, cfg.seed)
    for cache in (epic, ego):
        if extract_shards is None:
            s = run_shards(cache, cfg, encoder=enc, echo=lambda *a: None).to_json()
        else:
            s = extract_shards(cache, cfg)
        extract_text(cache, cfg, encoder=enc)
        step(3, f"extracted {cache.name}: {s['frames']} frames x 2 views, "
             f"{s['segments_failed']} failed; vocabularies noun, verb (+ .photo)"
             + "".join(f"\n  hand crops, {fallback_line(split, *n)}"
                       for split, n in s.get("fallbacks", {}).items()))
    for cache in (epic, ego):
        problems = verify(Cache.open(cache), deep=True)
        if problems:
            raise DemoError(f"verify --deep failed on {cache}: {problems[0]}")
    step(4, "verify --deep: both caches ok")
    return epic, ego

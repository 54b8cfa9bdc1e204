"""``xmic grid``: plan, run, status, table of experiment grids."""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click

from xmic.cli.base import UsageError, XmicGroup, status_options
from xmic.config import load_config
from xmic.files.long_lists import some
from xmic.grid.table import METRIC_CHOICES


@click.group(cls=XmicGroup)
def grid():
    """Reproduce the paper's tables: experiment grids from caches, resumable."""


def _caches(specs) -> dict:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--cache {spec!r}: expected DATASET=DIR, e.g. epic=caches/epic")
        out[name] = path
    return out


@grid.command("plan")
@click.argument("grid_dir", type=click.Path(path_type=Path))
@click.option("--recipe",
              help="paper-main, paper-egtea, paper-ablations, a recipe YAML file, or a planned "
                   "grid's folder (its recipe as planned). With --extend: the grid's own.")
@click.option("--cache", "caches", multiple=True, metavar="DATASET=DIR",
              help="The cache of a dataset (overrides the recipe's); DIR may be a published "
                   "cache, hf-hub:ORG/REPO[@REV] or file:///PATH, fetched and checked.")
@click.option("--class-splits", type=click.Path(path_type=Path),
              help="Folder of X-MIC's shared/novel class lists; every list the grid's "
                   "cross-dataset evaluations need is checked before anything trains.")
@click.option("--derive-class-splits", is_flag=True,
              help="Write the lists the folder lacks (X-MIC released none for EGTEA) by the "
                   "exact-name rule into GRID/class-splits/, recorded as derived.")
@click.option("--seeds", help="Seeds, e.g. 0,1,2 (overrides the recipe's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Training override for every run, e.g. epochs=5.")
@click.option("--extend", is_flag=True,
              help="Add the recipe's new seeds, methods, sources, labels and targets to the "
                   "grid planned here (planned runs are kept as they are); without --recipe, "
                   "the grid's recorded recipe with what is given here.")
@click.option("--methods", help="Plan only these rows of the recipe, e.g. xmic,zeroshot.")
@click.option("--drop-methods", help="Leave these rows of the recipe out, e.g. cocoop.")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2",
              help="One row more per value for every row that reads KEY, named ROW-LEAF-VALUE "
                   "(e.g. --sweep model.xmic.alpha=1,4 adds xmic-alpha-1, xmic-alpha-4).")
@click.option("--costs-from", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A grid run before: its measured epochs price this grid's runs per method "
                   "(scaled by epochs and training segments) in plan, status and run.")
@click.option("--probe", is_flag=True,
              help="Price the runs by training each method's first run for one epoch on "
                   "--probe-segments of its segments and scoring as many of each target's "
                   "(in a temporary folder, removed after).")
@click.option("--probe-segments", type=click.IntRange(8, 1_000_000), default=256,
              show_default=True, help="Segments a probe trains on.")
def grid_plan(grid_dir, recipe, caches, class_splits, derive_class_splits, seeds, sets, extend,
              methods, drop_methods, sweeps, costs_from, probe, probe_segments):
    """Plan a grid (one row per run) and check it against the caches; nothing runs."""
    from xmic.grid.plan import evaluations, plan_grid, warmup_warnings
    from xmic.grid.recipe import load_recipe
    from xmic.grid.steering import recipe_source, steer
    if probe and costs_from is not None:
        raise UsageError("give --probe or --costs-from, not both: each prices the runs")
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise UsageError(f"--seeds {seeds!r}: expected integers, e.g. 0,1,2") from None
    r = load_recipe(recipe_source(recipe, Path(grid_dir), extend), _caches(caches), seed_list,
                    str(class_splits) if class_splits else None, sets)
    r = steer(r, methods, drop_methods, sweeps)
    g = plan_grid(grid_dir, r, extend=extend, derive_lists=derive_class_splits)
    if g.get("class_lists"):
        click.echo(f"derived class lists ({g['class_lists']['rule']}): "
                   f"{', '.join(g['class_lists']['files'])} in {Path(grid_dir) / 'class-splits'}")
    if "extended" in g:
        click.echo(f"extended {grid_dir}: {g['extended']['runs_added']} new run(s), "
                   f"{g['extended']['targets_added']} new target(s) of planned runs")
    order = g["recipe"].get("order", {}).get("methods") or list(r.methods)
    methods = sorted({row["method"] for row in g["runs"]}, key=order.index)
    click.echo(f"grid {grid_dir}: recipe {r.name}, {len(g['runs'])} runs, {evaluations(g)} "
               f"evaluations ({', '.join(methods)} x {', '.join(g['recipe']['labels'])} x "
               f"seeds {list(g['recipe']['seeds'])})")
    for reason, rows in skipped_by_reason(g.get("skipped", [])).items():
        click.echo(f"not planned: {some(rows, sep=', ', what='rows not planned')}: {reason}")
    if costs_from is not None:
        from xmic.grid.costs import borrow_costs
        borrowed = borrow_costs(Path(grid_dir), g, costs_from)
        if borrowed["unmeasured"]:
            click.echo(f"{costs_from} measured no epoch of: {', '.join(borrowed['unmeasured'])}")
    if probe:
        from xmic.grid.costs import price
        from xmic.grid.probe import probe_rates
        rates = probe_rates(Path(grid_dir), g, probe_segments, echo=click.echo)
        price(Path(grid_dir), g, rates, "a probe", {})  # its lines above say what it trained
    from xmic.grid.state import eta_words, grid_status
    from xmic.slurm.status import duration
    _, status = grid_status(Path(grid_dir), g)
    known = {m: v for m, v in status["methods"].items()
             if v["left"] and v["seconds_per_run"] is not None}
    if known:
        click.echo("expected cost of the runs left" + eta_words(status).replace(";", ":", 1)
                   + "; per method: " + ", ".join(
                       f"{m} {duration(v['seconds_per_run'])} a run ({v['estimate']})"
                       for m, v in known.items()))
    for warning in warmup_warnings(g):
        click.echo(f"WARNING: {warning}")


def skipped_by_reason(notes: list[str]) -> dict[str, list[str]]:
    """The plan's ``ROW: why`` notes as why -> rows (one line per reason, not per row)."""
    out: dict[str, list[str]] = {}
    for note in notes:
        row, _, why = note.partition(": ")
        out.setdefault(why, []).append(row)
    return out


@grid.command("rescore")
@click.argument("grid_dir", type=click.Path(path_type=Path, exists=True))
@click.option("--class-splits", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of X-MIC's shared/novel class lists (none: the exact-name rule).")
@click.option("--derive-class-splits", is_flag=True,
              help="Write the lists the folder lacks by the exact-name rule into the grid.")
def grid_rescore(grid_dir, class_splits, derive_class_splits):
    """Score every trained run's cross-dataset targets again with other class lists (checked
    first), without training; runs still to come use them too."""
    from xmic.grid.runner import rescore
    s = rescore(grid_dir, str(class_splits) if class_splits else None, derive_class_splits,
                echo=click.echo)
    click.echo(f"rescored {s['rescored']} evaluation(s); {s['untrained']} run(s) not trained "
               f"yet will use these lists" + (f"; derived {', '.join(s['derived'])}"
                                             if s["derived"] else ""))
    click.echo(f"see: xmic grid table {grid_dir}")


@grid.command("run")
@click.argument("grid_dir", type=click.Path(path_type=Path, exists=True))
@click.option("--executor", type=click.Choice(["inprocess", "local", "slurm"]),
              default="inprocess", show_default=True)
@click.option("--parallel", type=int, default=1, show_default=True,
              help="local: worker processes.")
@click.option("--slurm-config", type=click.Path(path_type=Path), help="Slurm config YAML.")
@click.option("--slurm-set", multiple=True, metavar="KEY=VALUE",
              help="Slurm config override, e.g. partition=gpu.")
@click.option("--wait", is_flag=True, help="local/slurm: wait for the jobs.")
@click.option("--stack-seeds", is_flag=True,
              help="inprocess: train the seeds of each row together as one stacked model "
                   "(same results; X-MIC, linear, CLIP-Adapter).")
def grid_run(grid_dir, executor, parallel, slurm_config, slurm_set, wait, stack_seeds):
    """Train and score every run that is not finished; exit 1 when a run failed."""
    from xmic.grid.plan import load_grid
    from xmic.grid.state import format_status, grid_status
    if parallel < 1:
        raise UsageError(f"--parallel {parallel}: give at least 1")
    dead_jobs = []
    if executor == "inprocess":
        from xmic.grid.runner import GridInterrupted, run_inprocess
        try:
            out = run_inprocess(grid_dir, echo=click.echo, stack_seeds=stack_seeds)
        except KeyboardInterrupt:
            raise GridInterrupted(
                f"interrupted: finished runs are kept and the run in progress resumes from its "
                f"last epoch; run `xmic grid run {grid_dir}` again to continue") from None
        click.echo(f"loaded caches in {out['load_seconds']:.1f}s; {out['loads_saved']} "
                   "load(s) saved by loading each once")
    else:
        if stack_seeds:
            raise UsageError("--stack-seeds trains in this process: use --executor inprocess")
        from xmic.grid.runner import submit_grid
        from xmic.slurm.config import SlurmConfig, gpu_request
        from xmic.grid.plan import load_grid
        from xmic.slurm.scheduler import SubmitRefused
        devices = {r["config"].get("device", "auto") for r in load_grid(grid_dir)["runs"]}
        slu = load_config(SlurmConfig, slurm_config, [
            f"executor={executor}", "job_name=xmic-grid",
            *([] if executor == "slurm" else ["gpus_per_task=0"]), *slurm_set],
            base=gpu_request(devices))  # follows the device
        try:
            rec = submit_grid(grid_dir, slu, parallel, wait, echo=click.echo)
        except SubmitRefused as e:  # named as this command takes it
            raise e.spelled(lambda k: f"--slurm-set {k}=...") from None
        if not wait:
            return
        dead_jobs = rec.get("failed_jobs", [])
        for j in dead_jobs:
            click.echo(f"job {j['job_id']}: {j['error']}")
    g = load_grid(grid_dir)
    report, summary = grid_status(grid_dir, g)
    click.echo(format_status(grid_dir, report, summary))
    from xmic.grid.results import write_grid_results
    write_grid_results(grid_dir, g)  # GRID/results.parquet: xmic.results(GRID) in a notebook
    if summary["failed"] or dead_jobs:  # a job that died is a failure, whatever its runs say
        sys.exit(1)


@grid.command("status")
@click.argument("grid_dir", type=click.Path(path_type=Path, exists=True))
@status_options
def grid_status_cmd(grid_dir, as_json, watch, interval):
    """done / running / failed / pending per run, failures, ETA from the grid folder; for job
    arrays on Slurm also what the scheduler says (queued, pending and why)."""
    from xmic.grid.plan import load_grid
    from xmic.grid.state import format_status, grid_status
    from xmic.slurm.scheduler import queue_states, submission_queue_line
    from xmic.slurm.status import read_submissions
    g = load_grid(grid_dir)
    while True:
        report, summary = grid_status(grid_dir, g)
        subs = read_submissions(grid_dir)
        if as_json:
            jobs = [t["job_id"] for t in subs[-1].get("tasks", [])] if subs else []
            click.echo(json.dumps({"summary": summary, "runs": report,
                                   "scheduler": queue_states(jobs) if jobs else None}, indent=1))
        else:
            click.echo(format_status(grid_dir, report, summary))
            line = submission_queue_line(subs)
            if line:
                click.echo("  " + line)
        if not watch or not (summary["running"] or summary["pending"]):
            return
        time.sleep(interval)


@grid.command("table")
@click.argument("grid_dir", type=click.Path(path_type=Path, exists=True))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md",
              show_default=True, help="latex: a booktabs .tex, the best of each column in bold.")
@click.option("--metric", type=click.Choice(list(METRIC_CHOICES)), default="top-1",
              show_default=True, help="What the cells hold (shared / novel / HM: accuracy on "
                                      "the classes the source shares with the target or not).")
@click.option("--criterion", type=click.Choice(["exact", "semantic"]), default="exact",
              show_default=True, help="Which class-split lists shared/novel/HM use.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Write the table here (default: GRID/table.md|csv|tex), the figure beside "
                   "it (.png).")
@click.option("--ci", is_flag=True,
              help="95% intervals from a paired bootstrap over segments and seeds; bold only "
                   "a best whose difference to the second has an interval above 0.")
@click.option("--ci-samples", type=int, default=1000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--ci-seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--by", type=click.Choice(["row", "backbone"]), default="row", show_default=True,
              help="A grid of several backbones: one row per method and backbone, or the "
                   "backbones' columns side by side.")
def grid_table(grid_dir, fmt, metric, criterion, out, ci, ci_samples, ci_seed, by):
    """The paper's tables of what has finished (per label: methods x source -> target, mean ±
    std over seeds), GRID/results.parquet, and a figure (cross-dataset shared vs novel)."""
    from xmic.files.atomic import write_bytes_atomic, write_text_atomic
    from xmic.grid.layout import TABLE
    from xmic.grid.plan import load_grid
    from xmic.grid.results import write_grid_results
    from xmic.grid.figure import figure
    from xmic.grid.table import grid_tables
    from xmic.grid.results import backbone_names, rows_by_backbone
    g = load_grid(grid_dir)
    df, missing = write_grid_results(grid_dir, g)
    named = backbone_names(g) != [""]
    if by == "backbone" and not named:
        raise UsageError("--by backbone: this grid has one backbone")
    view_df, view = rows_by_backbone(df, g) if named else (df, g)  # rows "xmic [vit-b-16]"
    if by == "row":
        df, g = view_df, view
    ci_of = None
    if ci:
        if ci_samples < 100:
            raise UsageError(f"--ci-samples {ci_samples}: give at least 100 resamples")
        from xmic.grid.significance import significance
        ci_of = functools.partial(significance, Path(grid_dir), g,
                                  metric=METRIC_CHOICES[metric], criterion=criterion,
                                  n=ci_samples, seed=ci_seed)  # called with the tables
    text = grid_tables(df, missing, g, fmt, METRIC_CHOICES[metric], criterion, ci_of,
                       by_backbone=by == "backbone")
    out = Path(out) if out else Path(grid_dir) / f"{TABLE}.{TABLE_SUFFIX[fmt]}"
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    write_text_atomic(out, text, out.parent)
    write_bytes_atomic(out.with_suffix(".png"), figure(view_df, view, criterion), out.parent)
    click.echo(text, nl=False)  # stdout holds the table only: `> table.md` captures it
    from xmic.evaluate.results import RESULTS_FILE
    click.echo(f"(table: {out}; figure: {out.with_suffix('.png')}; results: "
               f"{Path(grid_dir) / RESULTS_FILE})", err=True)


TABLE_SUFFIX = {"md": "md", "csv": "csv", "latex": "tex"}

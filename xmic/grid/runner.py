"""Run a grid: train and score every run that is not finished, here or as job arrays.

Inputs: a planned grid folder, an executor (``inprocess``: one run after another in this
process, each cache loaded once for the whole grid; ``local``: up to ``parallel`` worker
processes; ``slurm``: job arrays through ``xmic.slurm.launch``, requeued on preemption); CoOp and
CoCoOp rows share one text tower per model identity per process. Output:
per run folder the training stage's files (``last.pt`` every epoch, ``checkpoint.pt``, ...),
each target's ``eval/DATASET-SPLIT/``, then ``finished.json``; or ``failed.json`` with the
reason. A finished run is never redone; a killed one resumes from its last epoch checkpoint
(``train(resume=True)``), so it ends with the weights of an uninterrupted run.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
import time
from pathlib import Path

from xmic.cache import Cache
from xmic.files.atomic import (make_dirs, remove_file,
                                     write_json_atomic)
from xmic.files.claims import Claim
from xmic.cache.writer import disk_full
from xmic.config import XmicError
from xmic.evaluate.run import evaluate_run
from xmic.grid.class_lists import (ListError, check_lists, cross_pairs, derived_record,
                                   list_folders, write_derived)
from xmic.grid.layout import FAILED, FINISHED, RUNNING, SLURM_LOGS, SUBMISSIONS
from xmic.grid.plan import GridError, load_grid, rewrite_grid, run_config
from xmic.grid.state import eta_words, eval_dir, grid_status, read_metrics, run_state
from xmic.train.checkpoint import load_checkpoint
from xmic.train.run_folder import CHECKPOINT, LAST
from xmic.train.config import TrainConfig
from xmic.train.data import load_bank
from xmic.train.loop import train
from xmic.towers.text_tower import text_tower


class RunsFailed(XmicError):
    """Runs of a grid task failed; their reasons are in their failed.json."""


class GridInterrupted(XmicError):
    """Ctrl-C (or SIGINT) while a grid runs in this process: what finished is kept."""
    exit_code = 130


class BankMemo:
    """``load_bank`` that keeps what it loaded, the ``keep`` most recently used banks at most:
    a grid in one process reads each (cache, split, views, label) once while its runs need it
    (runs come grouped by source: one source bank and its runs' target banks at a time), and
    never holds every cache it opened. ``seconds`` is the time spent loading, ``hits`` the
    loads saved."""

    def __init__(self, keep: int = 4):
        self._banks: OrderedDict = OrderedDict()
        self.keep, self.seconds, self.hits = max(1, keep), 0.0, 0

    def __call__(self, cache: Cache, split, views, label, classes, device, frames=16, offset=0):
        key = (str(cache.root), split, tuple(views), label, classes, str(device), frames, offset)
        if key in self._banks:
            self.hits += 1
            self._banks.move_to_end(key)
            return self._banks[key]
        while len(self._banks) >= self.keep:  # let go before loading: never keep + 1 banks
            self._banks.popitem(last=False)
        t = time.time()
        self._banks[key] = load_bank(cache, split, views, label, classes, device, frames, offset)
        self.seconds += time.time() - t
        return self._banks[key]

    def __len__(self) -> int:
        return len(self._banks)


def bank_memo(runs: list[dict]) -> BankMemo:
    """A memo holding one source bank and the target banks of a run (the runs of one source
    share them)."""
    return BankMemo(keep=1 + max((len(r["targets"]) for r in runs), default=0))


def _trained(run_dir: Path, cfg: TrainConfig) -> bool:
    """The run's training finished: its last checkpoint is at the last epoch."""
    if not (run_dir / LAST).exists() or not (run_dir / CHECKPOINT).exists():
        return False
    return load_checkpoint(run_dir / LAST)["epoch"] >= cfg.epochs


def run_one(grid_dir: Path, run: dict, class_splits: str | None, bank_loader=load_bank,
            echo=print) -> str:
    """Train and score one run unless it is done; returns its final state (done | failed).
    Any failure is recorded in ``failed.json`` with its reason; the next run goes on.
    The prompt methods' text towers are shared through the process's ``text_tower``."""
    grid_dir = Path(grid_dir)
    d = grid_dir / run["dir"]
    if run_state(grid_dir, run)["state"] == "done":
        return "done"
    make_dirs(d, grid_dir)
    t0 = time.time()
    claim = Claim.take(d / RUNNING, grid_dir)
    if claim is None:
        echo(f"run {run['id']}: running elsewhere (a live runner holds {d / RUNNING}); skipped")
        return "running"
    try:
        remove_file(d / FAILED, grid_dir)
        cfg = run_config(grid_dir, run)
        if not _trained(d, cfg):
            show = functools.partial(_show, echo, run["id"])
            train(run["cache"], cfg, d, resume=(d / LAST).exists(), echo=show,
                  bank_loader=bank_loader)
        for t in run["targets"]:
            if read_metrics(d, t) is None:
                evaluate_run(d, t["cache"], t["split"], class_splits, eval_dir(d, t),
                             device=cfg.device, bank_loader=bank_loader,
                             classes=t.get("classes", "all"))
        write_json_atomic(d / FINISHED, {"seconds": round(time.time() - t0, 2),
                                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}, grid_dir)
        echo(f"run {run['id']}: done in {time.time() - t0:.1f}s")
        return "done"
    except (XmicError, OSError, RuntimeError, ValueError) as e:
        if disk_full(e):  # every later run would fail the same way: stop the grid here
            where = getattr(e, "filename", None) or d
            try:
                record_failure(d, grid_dir, f"the disk is full (writing {where})")
            except OSError:
                pass
            raise GridError(f"run {run['id']}: the disk is full (no space left on device) while "
                            f"writing {where}; free space, then run the same command again "
                            "(finished runs and epoch checkpoints are kept)") from None
        record_failure(d, grid_dir, f"{type(e).__name__}: {e}")
        echo(f"run {run['id']}: FAILED: {e}")
        return "failed"
    finally:
        claim.release()


def record_failure(run_dir: Path, grid_dir: Path, error: str) -> None:
    write_json_atomic(run_dir / FAILED, {"error": error, "time": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, grid_dir)


def _show(echo, rid: str, line: str = "", *_, **__) -> None:
    """Each line of the training loop, shown with the run's id."""
    if line:
        echo(f"run {rid}: {line}")


def rescore(grid_dir: Path, class_splits: str | None, derive: bool = False, echo=print) -> dict:
    """Score every trained run's cross-dataset targets again with other class lists (checked
    first, as at plan), without training; the plan records the new lists, so runs still to
    come use them too. Returns how many evaluations were redone."""
    grid_dir = Path(grid_dir)
    grid = load_grid(grid_dir)
    try:
        derived = check_lists(grid["runs"], class_splits, derive)
    except ListError as e:
        raise GridError(str(e)) from None
    grid["recipe"]["class_splits"] = str(Path(class_splits).resolve()) if class_splits else None
    grid.pop("class_lists", None)
    if derived:
        grid["class_lists"] = derived_record(derived)
    write_derived(grid_dir, derived)
    grid = rewrite_grid(grid_dir, grid)
    folders, done, left = list_folders(grid_dir, grid), 0, 0
    pairs = cross_pairs(grid["runs"])
    for r in grid["runs"]:
        d = grid_dir / r["dir"]
        targets = [t for t in r["targets"] if (t["dataset"], r["source"], r["label"]) in pairs]
        if not targets:
            continue
        cfg = run_config(grid_dir, r)
        if not ((d / FINISHED).exists() or _trained(d, cfg)):  # zero-shot: finished, untrained
            left += 1
            continue
        for t in targets:
            evaluate_run(d, t["cache"], t["split"], folders, eval_dir(d, t), device=cfg.device)
            done += 1
        echo(f"run {r['id']}: rescored on {', '.join(t['dataset'] for t in targets)}")
    return {"rescored": done, "untrained": left, "derived": sorted(derived)}


def run_ids(grid: dict, ids) -> list[dict]:
    by_id = {r["id"]: r for r in grid["runs"]}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise GridError(f"run(s) {unknown} are not in this grid")
    return [by_id[i] for i in ids]


def grid_task(grid_dir: str, ids: list[str]) -> dict:
    """One array task (local or Slurm): its runs in turn. Raises when one failed, so the job's
    state says so; every run's own state is in the grid folder."""
    grid = load_grid(grid_dir)
    cs = list_folders(grid_dir, grid)
    memo = bank_memo(run_ids(grid, ids))  # the runs of one task share their loads
    states = {r["id"]: run_one(Path(grid_dir), r, cs, memo, echo=lambda m: print(m, flush=True))
              for r in run_ids(grid, ids)}
    failed = [k for k, v in states.items() if v == "failed"]
    if failed:
        raise RunsFailed(f"{len(failed)} run(s) failed: {failed}; see `xmic grid status`")
    return states


def run_inprocess(grid_dir: Path, echo=print, stack_seeds: bool = False) -> dict:
    """Every unfinished run in this process, caches loaded once; returns states and load stats.
    ``stack_seeds``: fresh runs that differ only in their seed are trained together first, as
    one stacked model (``xmic.grid.stacking``), then every run is scored as usual."""
    grid = load_grid(grid_dir)
    memo = bank_memo(grid["runs"])
    cs = list_folders(grid_dir, grid)
    loads = text_tower.loads
    stacked = []
    if stack_seeds:
        from xmic.grid.stacking import train_seed_groups
        stacked = train_seed_groups(Path(grid_dir), grid["runs"], memo, echo,
                                    lambda d: Claim.take(d / RUNNING, Path(grid_dir)),
                                    functools.partial(_show, echo))
    states = {}
    for r in grid["runs"]:
        was = run_state(grid_dir, r)["state"]
        states[r["id"]] = run_one(grid_dir, r, cs, memo, echo)
        if was != "done":  # progress, each run left priced at its own method's cost
            _, s = grid_status(grid_dir, grid)
            echo(f"grid: {s['done']} of {s['runs']} runs done{eta_words(s)}")
    return {"states": states, "load_seconds": round(memo.seconds, 3), "loads_saved": memo.hits,
            "tower_loads": text_tower.loads - loads, "stacked": stacked}



def submit_grid(grid_dir: Path, slurm_cfg, parallel: int = 1, wait: bool = False,
                echo=print) -> dict:
    """Every run that is neither done nor running, as job arrays (``slurm_cfg.executor`` local
    or slurm): one run per array task on Slurm; on the local executor, which starts every task
    at once, the runs are grouped into ``parallel`` tasks. Returns the submission record (and,
    with ``wait``, the jobs that did not succeed)."""
    from xmic.grid.state import grid_status
    from xmic.slurm.launch import CallTask, log_folder, submit_arrays, wait as wait_jobs
    grid_dir = Path(grid_dir).resolve()
    grid = load_grid(grid_dir)
    report, summary = grid_status(grid_dir, grid)
    todo = [r["id"] for r in grid["runs"] if report[r["id"]]["state"] in ("pending", "failed")]
    record = {"kind": "grid", "runs": len(todo),
              "skipped": {k: summary[k] for k in ("done", "running")}}
    if not todo:
        echo(f"nothing to run: {summary['done']} done, {summary['running']} running")
        return record
    per_task = -(-len(todo) // max(1, parallel)) if slurm_cfg.executor == "local" else 1
    tasks = [todo[i:i + per_task] for i in range(0, len(todo), per_task)]
    echo(f"submitting {len(todo)} run(s) as {len(tasks)} task(s) on executor {slurm_cfg.executor}")
    task = CallTask(functools.partial(grid_task, str(grid_dir)))
    logs = log_folder(slurm_cfg, grid_dir, SLURM_LOGS)  # no planted link on the way
    record, jobs = submit_arrays(task, tasks, slurm_cfg, logs,
                                 grid_dir / SUBMISSIONS, grid_dir, record, echo,
                                 item_key="runs")
    if wait:
        record["failed_jobs"] = wait_jobs(jobs)
        dead = {j["job_id"]: j["error"] for j in record["failed_jobs"]}
        for job, ids in zip(jobs, tasks):  # a task that died left its runs unfinished
            if job.job_id not in dead:
                continue
            for r in run_ids(grid, ids):
                if run_state(grid_dir, r)["state"] == "pending":  # not another runner's live run
                    record_failure(grid_dir / r["dir"], grid_dir,
                                   f"its job {job.job_id} ended without finishing it: "
                                   f"{dead[job.job_id]}")
    return record

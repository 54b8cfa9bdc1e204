"""Submit a cache's uncommitted shards as submitit job arrays (slurm | local | debug).

Inputs: a cache folder with an extraction plan, an ``ExtractConfig`` and a ``SlurmConfig``.
``submit`` picks the shards that are neither committed nor running (``retry``: also failed ones,
and committed ones holding failed segments, which are moved to ``views/VIEW/.superseded/``
first), groups them ``shards_per_task`` to an array task, splits the tasks into arrays of at
most MaxArraySize (read from ``scontrol show config``, or the config's ``max_array_size``), and
submits them through ``launch.submit_arrays`` (shared with the grid). Output: a submission record (job ids, the shards of each
task, both configs, the log folder, the time) appended to ``CACHE/slurm/submissions.jsonl``
and returned, with the submitit jobs (kept out of the record) for ``wait``.
"""
from __future__ import annotations

from pathlib import Path

from xmic.cache.paths import SLURM_LOGS, SUBMISSIONS
from xmic.cache.redo import supersede
from xmic.config import XmicError, config_to_dict
from xmic.extract.config import ExtractConfig
from xmic.extract.planning import kept_line, still_broken
from xmic.towers.encoders import check_weights
from xmic.slurm.config import SlurmConfig
from xmic.slurm.launch import array_size, log_folder, split_arrays, submit_arrays, wait
from xmic.slurm.status import read_submissions, status
from xmic.slurm.worker import ShardTask
from xmic.files.long_lists import some


class SubmissionError(XmicError):
    """Nothing to retry, or extraction jobs that did not finish."""


def group_shards(shards: list[str], per_task: int, max_tasks: int | None = None) -> list[list[str]]:
    """Consecutive shards, ``per_task`` to a task (more when ``max_tasks`` caps the count)."""
    if max_tasks:
        per_task = max(per_task, -(-len(shards) // max_tasks))
    return [shards[i:i + per_task] for i in range(0, len(shards), per_task)]


def choose_shards(report: dict[str, dict], retry: bool) -> tuple[list[str], list[str]]:
    """(shards to submit, committed shards with failed segments to supersede first)."""
    todo, redo = [], []
    for shard, r in report.items():
        if r["state"] == "pending" or (r["state"] == "failed" and retry):
            todo.append(shard)
            if r["failed_segments"]:
                redo.append(shard)
    return todo, redo


def submit(cache_dir: Path, extract_cfg: ExtractConfig, slurm_cfg: SlurmConfig, retry: bool = False,
           dry_run: bool = False, echo=print) -> tuple[dict, list]:
    """Submit what is left to do; returns (record, submitit jobs)."""
    check_weights(extract_cfg.weights)  # before anything is submitted
    cache, report, summary, subs = status(cache_dir)
    todo, redo = choose_shards(report, retry)
    broken = still_broken(cache, redo)  # their inputs still missing: redoing them is for nothing
    if broken:
        echo(kept_line(broken, "retry"))
    todo = [s for s in todo if s not in broken]
    redo = [s for s in redo if s not in broken]
    kind = "retry" if retry else "submit"
    max_size = array_size(slurm_cfg)
    cap = slurm_cfg.array_parallelism if slurm_cfg.executor == "local" else None
    tasks = group_shards(todo, slurm_cfg.shards_per_task, cap)
    arrays = split_arrays(tasks, max_size)
    log_dir = log_folder(slurm_cfg, cache.root, SLURM_LOGS, create=not dry_run)
    record = {"kind": kind, "shards": len(todo), "superseded": redo,
              "skipped": {k: summary[k] for k in ("done", "running")},
              "extract": config_to_dict(extract_cfg)}
    if not todo:
        echo(f"nothing to {kind}: {summary['done']} shard(s) done, {summary['running']} running, "
             f"{summary['failed']} failed" + ("" if retry else " (`xmic slurm retry` resubmits those)"))
        return record, []
    echo(f"{kind}: {len(todo)} shard(s) in {len(tasks)} task(s), {len(arrays)} array(s) of at most "
         f"{max_size} on executor {slurm_cfg.executor}" + (f"; {len(redo)} shard(s) with failed "
                                                          "segments are redone" if redo else ""))
    if retry:
        echo(f"  will redo: {some(todo, 20, what='shards to redo')}")
    if dry_run:
        for i, arr in enumerate(arrays):
            echo(f"  array {i}: {len(arr)} task(s): {arr[0][0]} .. {arr[-1][-1]}")
        if slurm_cfg.executor == "slurm":
            for line in dry_run_sbatch(slurm_cfg, log_dir, len(arrays[0])):
                echo(f"  {line}")
        return record, []
    views = sorted({v for r in report.values() for v in r["views"]})
    for shard in redo:
        supersede(cache.root, views, shard)
    worker = ShardTask(str(cache.root), config_to_dict(extract_cfg))
    return submit_arrays(worker, tasks, slurm_cfg, log_dir, cache.root / SUBMISSIONS, cache.root,
                         record, echo, item_key="shards")


def dry_run_sbatch(cfg: SlurmConfig, log_dir: Path, tasks: int) -> list[str]:
    """The #SBATCH lines of the first array (submitit's own script), or why they cannot be
    shown here (no Slurm client)."""
    import tempfile

    from xmic.slurm.launch import make_executor
    from xmic.slurm.scheduler import sbatch_lines
    with tempfile.TemporaryDirectory() as tmp:  # a dry run writes nothing of its own
        try:
            ex = make_executor(cfg, Path(tmp))
        except RuntimeError as e:  # submitit: 'Could not detect "srun"'
            return [f"(no #SBATCH lines: {e})"]
        return [ln.replace(tmp, str(log_dir)) for ln in sbatch_lines(ex, tasks)]


def last_submission_configs(cache_dir: Path, echo=print) -> tuple[ExtractConfig, SlurmConfig]:
    """The extraction and Slurm configs of the cache's latest submission (for retry). Work
    first run in-process (``xmic extract run``) has none: then the extraction config recorded
    in its committed shards (so the redo gives the same fingerprint) and default Slurm settings."""
    from xmic.cache import Cache
    from xmic.config import from_dict
    subs = [s for s in read_submissions(cache_dir) if "extract" in s]
    if subs:
        return (from_dict(ExtractConfig, subs[-1]["extract"], "extract config of the last submission"),
                from_dict(SlurmConfig, subs[-1]["slurm"], "slurm config of the last submission"))
    cache = Cache.open(cache_dir)
    for view in cache.views():
        for shard in sorted(cache.committed(view)):
            producer = cache.marker(view, shard).get("config", {}).get("producer")
            if producer:
                ext = from_dict(ExtractConfig, producer, f"extract config of shard {shard}")
                echo(f"no earlier submission: retrying with the extraction settings of the "
                     f"committed shards (model {ext.model}, weights {ext.weights or 'default'}) "
                     "and the default Slurm settings (change either with the options)")
                return ext, SlurmConfig()
    raise SubmissionError(f"{cache_dir}: no earlier submission and no committed shard to take "
                          "settings from; use `xmic slurm submit` (or `xmic extract run`)")


def extract_and_wait(cache_dir: Path, extract_cfg: ExtractConfig, slurm_cfg: SlurmConfig,
                     echo=print) -> dict:
    """Submit every uncommitted shard, wait for the jobs, and return a run_shards-like summary;
    raises when a shard is left failed or undone."""
    _, jobs = submit(cache_dir, extract_cfg, slurm_cfg, echo=echo)
    bad = wait(jobs)
    _, report, summary, _ = status(cache_dir)
    if summary["pending"] or summary["running"] or (bad and summary["failed"]):
        why = bad[0]["error"] if bad else f"{summary['pending']} shard(s) still pending"
        raise SubmissionError(f"{cache_dir}: extraction jobs did not finish ({why}); see "
                        f"`xmic slurm status {cache_dir}`")
    return {"frames": int(sum(r["frames"] / max(len(r["views"]), 1) for r in report.values())),
            "segments_failed": sum(r["failed_segments"] for r in report.values()),
            "jobs": [j.job_id for j in jobs]}

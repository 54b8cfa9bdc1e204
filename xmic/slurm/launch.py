"""The launcher: any list of work items as submitit job arrays, one item per array task.

Inputs: a picklable callable ``fn(item)`` (the caller's, e.g. one extraction task or one grid
run; this package never imports what it runs), the items, a ``SlurmConfig``, the log folder and
the submission-record file. Output: the items split into arrays of at most MaxArraySize (read
from ``scontrol show config``, or the config's ``max_array_size``), submitted with
``map_array``; one JSON line appended to the record file (job ids, each task's item, the
config, the time) and the submitit jobs for ``wait``. ``CallTask`` is checkpointable: on
preemption or a time limit submitit requeues the same item, and the callable resumes its work.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import time
from pathlib import Path

import submitit

from xmic.files.atomic import append_line, guard, make_dirs, refuse_links_below
from xmic.config import config_to_dict
from xmic.slurm.config import SlurmConfig
from xmic.slurm.scheduler import sbatch_refusal


def cluster_max_array_size() -> int | None:
    """MaxArraySize of the cluster this machine submits to, or None without ``scontrol``."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(m.group(1)) if m else None


def split_arrays(tasks: list, max_array_size: int) -> list[list]:
    return [tasks[i:i + max_array_size] for i in range(0, len(tasks), max_array_size)]


def array_size(cfg: SlurmConfig) -> int:
    """The largest array this submission may use."""
    size = cfg.max_array_size
    if size is None and cfg.executor == "slurm":
        size = cluster_max_array_size()
    return size or 1000


def make_executor(cfg: SlurmConfig, folder: Path) -> submitit.Executor:
    ex = submitit.AutoExecutor(folder=folder, cluster=cfg.executor,
                               slurm_max_num_timeout=cfg.max_timeouts)
    params = dict(timeout_min=cfg.timeout_min, name=cfg.job_name)
    if cfg.executor == "slurm":
        params.update(cpus_per_task=cfg.cpus_per_task, mem_gb=cfg.mem_gb,
                      slurm_array_parallelism=cfg.array_parallelism,
                      slurm_signal_delay_s=cfg.signal_delay_s, stderr_to_stdout=True)
        if cfg.gpus_per_task:
            params["gpus_per_node"] = cfg.gpus_per_task  # one task per node
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(cfg, key):
                params[f"slurm_{key}"] = getattr(cfg, key)
        if cfg.setup:
            params["slurm_setup"] = list(cfg.setup)
    elif cfg.executor == "local" and cfg.gpus_per_task:  # local runs every task at once
        params["gpus_per_node"] = cfg.gpus_per_task
    ex.update_parameters(**params)
    return ex


class CallTask(submitit.helpers.Checkpointable):
    """One array task: ``fn(item)``. Requeued with the same item when preempted (USR2 before the
    time limit, or a requeue): ``fn`` must resume from what it saved."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, item):
        return self.fn(item)

    def checkpoint(self, item):
        print("xmic: checkpoint: requeueing; work saved so far is kept", flush=True)
        return submitit.helpers.DelayedSubmission(CallTask(self.fn), item)


def log_folder(cfg: SlurmConfig, root: Path, default: str, create: bool = True) -> Path:
    """Where submitit writes its pickles and logs (which the jobs unpickle): the ``log_dir``
    the user names (it may be a link: their choice), else ``root/default``, created below
    ``root`` with no link on the way nor inside (a planted link would send the pickles, and
    the code they run, elsewhere)."""
    if cfg.log_dir:
        return Path(cfg.log_dir).resolve()
    root = Path(root).resolve()
    folder = make_dirs(root / default, root) if create else guard(root / default, root)
    refuse_links_below(folder, inward_ok=True)  # submitit keeps its own links to its scripts
    return folder


def submit_arrays(task, items: list, cfg: SlurmConfig, log_dir: Path, record_file: Path,
                  record_root: Path, record: dict, echo=print,
                  item_key: str = "item") -> tuple[dict, list]:
    """Submit ``task`` over ``items`` as arrays; append ``record`` (completed with the arrays,
    tasks and the Slurm config) to ``record_file`` (below ``record_root``). Returns (record, jobs)."""
    size = array_size(cfg)
    arrays = split_arrays(list(items), size)
    record = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "executor": cfg.executor, "log_dir": str(log_dir), "max_array_size": size,
              "slurm": config_to_dict(cfg), "arrays": [], "tasks": []}
    executor = make_executor(cfg, log_dir)
    jobs = []
    for arr in arrays:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # sbatch's words: in the error
                got = executor.map_array(task, arr)
        except Exception as e:  # sbatch said no: one line, and no half-submitted grid or cache
            if cfg.executor != "slurm":
                raise
            cancel([a["job_id"] for a in record["arrays"]])
            raise sbatch_refusal(e) from None
        jobs += got
        array_id = got[0].job_id.split("_")[0]
        record["arrays"].append({"job_id": array_id, "tasks": len(arr)})
        record["tasks"] += [{"job_id": j.job_id, item_key: item} for j, item in zip(got, arr)]
        echo(f"  submitted {array_id}: {len(arr)} task(s)")
    append_line(Path(record_file), json.dumps(record, sort_keys=True, default=str) + "\n",
                Path(record_root))
    return record, jobs


def cancel(array_ids: list[str]) -> None:
    """Cancel arrays submitted before a later one was refused (best effort)."""
    if array_ids:
        subprocess.run(["scancel", *array_ids], capture_output=True, timeout=60)


def wait(jobs: list) -> list[dict]:
    """Wait for every job; returns one line per job that did not succeed."""
    from submitit.local.local import LocalJob
    bad = []
    for j in jobs:
        if isinstance(j, LocalJob):  # a local process that died writes no result: its exit is
            j._results_timeout_s = 1  # known at once, no shared file system to wait for (15 s)
        try:
            j.result()
        except submitit.core.utils.UncompletedJobError:  # died: no result, whatever its log says
            try:
                state = j.state
            except Exception:  # noqa: BLE001 - a state we cannot read is still a death
                state = "unknown"
            bad.append({"job_id": j.job_id, "error": f"killed or died without a result (state "
                        f"{state}: a signal, out of memory or time); its log: {j.paths.stderr}"})
        except Exception as e:  # the task's own error
            msg = str(e).strip().splitlines()
            bad.append({"job_id": j.job_id, "error": msg[-1] if msg else type(e).__name__})
    return bad

"""What the scheduler says, in one line each: a refused ``sbatch``, the ``#SBATCH`` lines a
submission would use, and the queue states of submitted jobs.

Inputs: a ``SlurmConfig`` (and the log folder, the number of tasks), an exception raised by
submitit while submitting, job ids. Outputs: ``sbatch_refusal`` -> ``SubmitRefused`` (exit 2)
quoting sbatch's own message and naming the option to change; ``sbatch_lines`` -> the
``#SBATCH`` lines of the array script submitit would write; ``queue_states`` -> per job id
its state (PENDING, RUNNING, COMPLETED, ...) and pending reason, from ``squeue`` (queued jobs)
and ``sacct`` (finished ones), or None without a scheduler to ask (then the files are all
there is, and the status says so).
"""
from __future__ import annotations

import re
import subprocess

from xmic.config import XmicError

# words in sbatch's message -> the SlurmConfig key that sets it
KEY_OF = (("partition", "partition"), ("account", "account"), ("qos", "qos"),
          ("constraint", "constraint"), ("feature", "constraint"),
          ("time limit", "timeout_min"), ("memory", "mem_gb"), ("gres", "gpus_per_task"),
          ("gpu", "gpus_per_task"), ("cpu", "cpus_per_task"), ("array", "max_array_size"))


class SubmitRefused(XmicError):
    """sbatch refused the submission; nothing was recorded as submitted. ``keys``: the Slurm
    settings its words point to; ``spelled`` names them as the command in use takes them."""

    def __init__(self, said: str, keys: list[str]):
        self.said, self.keys = said, keys
        super().__init__(self._text(lambda k: f"the Slurm setting {k}"))

    def _text(self, spell) -> str:
        hint = (f"; change {' or '.join(spell(k) for k in self.keys)}" if self.keys
                else "; check the Slurm options of this command")
        return f"sbatch refused the job array: {self.said}{hint}; nothing was submitted"

    def spelled(self, spell) -> "SubmitRefused":
        """The same refusal naming ``spell(key)``, e.g. ``--gpus-per-task`` or
        ``--slurm-set gpus_per_task=N``."""
        out = SubmitRefused(self.said, self.keys)
        out.args = (self._text(spell),)
        return out


def sbatch_message(exc: BaseException) -> str:
    """sbatch's own words from submitit's error (its output holds the failed command's stderr)."""
    text = "\n".join(str(a) for a in getattr(exc, "args", ()) if a) or str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.lower().startswith(("sbatch:", "error:", "srun:"))]
    return "; ".join(said or lines[-1:]) or type(exc).__name__


def sbatch_refusal(exc: BaseException) -> SubmitRefused:
    msg = sbatch_message(exc)
    low = msg.lower()
    return SubmitRefused(msg, list(dict.fromkeys(k for word, k in KEY_OF if word in low)))


def sbatch_lines(executor, tasks: int) -> list[str]:
    """The ``#SBATCH`` lines of an array of ``tasks`` as submitit would write them."""
    inner = getattr(executor, "_executor", executor)
    if not hasattr(inner, "_make_submission_file_text"):
        return []
    params = dict(inner.parameters)
    if tasks > 1:
        params["map_count"] = tasks
    from submitit.slurm.slurm import _make_sbatch_string
    text = _make_sbatch_string(command="python -m submitit.core._submit", folder=inner.folder,
                               **params)
    return [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def queue_states(job_ids: list[str]) -> dict | None:
    """job id (array tasks as ARRAY_TASK) -> {"state", "reason"}; None without a scheduler."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out: dict = {}
    acct = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(arrays), "-o", "JobID,State"])
    queue = _run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
    if acct is None and queue is None:
        return None
    for line in (acct or "").splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and re.fullmatch(r"\d+(_\d+)?", parts[0]):
            out[parts[0]] = {"state": parts[1].split()[0], "reason": None}
    for line in (queue or "").splitlines():  # the queue is the fresher of the two
        parts = line.split("|")
        if len(parts) >= 3:
            out[parts[0]] = {"state": parts[1], "reason": None if parts[2] in ("None", "") else parts[2]}
    return out


def queue_summary(job_ids: list[str]) -> str:
    """One line: the scheduler's view of the jobs, or why there is none."""
    states = queue_states(job_ids)
    if states is None:
        return "scheduler: no squeue/sacct here; the states above are the cache's files only"
    counts: dict = {}
    for j in job_ids:
        s = states.get(j) or states.get(j.split("_")[0])
        key = "unknown to the scheduler" if s is None else (
            f"{s['state']} ({s['reason']})" if s.get("reason") else s["state"])
        counts[key] = counts.get(key, 0) + 1
    return "scheduler: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) if counts \
        else "scheduler: no jobs submitted"


def submission_queue_line(submissions: list[dict]) -> str | None:
    """The scheduler's line for the latest submission's jobs ('' for local executors)."""
    if not submissions or submissions[-1].get("executor") != "slurm":
        return None
    return queue_summary([t["job_id"] for t in submissions[-1].get("tasks", [])])

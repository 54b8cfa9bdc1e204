"""The Slurm stage's config (``SlurmConfig``): executor and the resources of one array task.

Input: YAML file and ``--set key=value`` overrides (or the CLI's options). Output: a frozen
dataclass, written with the extraction config into every submission record
(``CACHE/slurm/submissions.jsonl``), so ``xmic slurm retry`` resubmits with the same settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


def gpu_request(devices) -> dict:
    """The GPU request that follows the device(s) work runs on: none when every one is the CPU
    (as a config base: a YAML or an option naming gpus_per_task still wins)."""
    return {"gpus_per_task": 0} if set(devices) == {"cpu"} else {}


@dataclass(frozen=True)
class SlurmConfig:
    executor: Literal["slurm", "local", "debug"] = "slurm"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8          # DataLoader workers get cpus_per_task - 1
    mem_gb: int = 32
    timeout_min: int = 240          # per attempt; a timed-out task requeues itself
    max_timeouts: int = 3           # requeues after time-outs (preemptions are not counted)
    signal_delay_s: int = 120       # USR2 this long before the time limit: drain and requeue
    array_parallelism: int = 64     # tasks of one array running at once (local: processes)
    shards_per_task: int = 1        # shards one array task extracts in turn
    max_array_size: int | None = None  # None: MaxArraySize from `scontrol show config`
    job_name: str = "xmic-extract"
    log_dir: str | None = None      # submitit folder; default CACHE/slurm/logs
    setup: tuple[str, ...] = ()     # shell lines run before each task (module load, ...)

    def __post_init__(self):
        for name in ("cpus_per_task", "mem_gb", "timeout_min", "array_parallelism",
                     "shards_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_task < 0 or self.max_timeouts < 0 or self.signal_delay_s < 0:
            raise ValueError("gpus_per_task, max_timeouts and signal_delay_s must be >= 0")
        if self.max_array_size is not None and self.max_array_size < 1:
            raise ValueError(f"max_array_size must be >= 1, got {self.max_array_size}")

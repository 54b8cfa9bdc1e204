"""The layout of a grid folder, written once.

Input: a grid folder. Output: the names below (a run's own files are ``train.run_folder``'s)::

    GRID/grid.json                    the plan: the resolved recipe and one row per run (hashed)
    GRID/config.yaml                  the recipe, as YAML
    GRID/runs/ID/                     one run folder per row, plus:
    GRID/runs/ID/running.json         the claim of the runner training it (heartbeat: its mtime)
    GRID/runs/ID/finished.json        written when every target is scored
    GRID/runs/ID/failed.json          the last failure's reason
    GRID/costs-from.json              per-method costs measured on another grid (--costs-from)
                                      or by a probe (--probe)
    GRID/.probe-XXXX/                 a probe's one-epoch run, removed when it ends
    GRID/class-splits/                lists the grid derived (--derive-class-splits), derived.json
    GRID/results.parquet              every score, one row per (run, target, metric)
    GRID/table.{md,csv,tex}, .png     the tables and the figure of `xmic grid table`
    GRID/slurm/logs/, submissions.jsonl   job arrays (local or Slurm executors)
"""
from __future__ import annotations

GRID_FILE = "grid.json"
RECIPE_YAML = "config.yaml"
RUNS = "runs"
RUNNING = "running.json"
FINISHED = "finished.json"
FAILED = "failed.json"
TABLE = "table"
SLURM_LOGS = "slurm/logs"
BORROWED_COSTS = "costs-from.json"
PROBE_PREFIX = ".probe-"
DERIVED_LISTS = "class-splits"
DERIVED_RECORD = "derived.json"
SUBMISSIONS = "slurm/submissions.jsonl"

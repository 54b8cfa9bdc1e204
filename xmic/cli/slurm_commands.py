"""``xmic slurm``: submit, status, retry of extraction job arrays."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from xmic.cli.base import XmicGroup, status_options, extract_config
from xmic.config import load_config

@click.group(cls=XmicGroup)
def slurm():
    """Run extraction as job arrays: submit, status, retry (slurm | local | debug executors)."""


_RESOURCES = (("executor", click.Choice(["slurm", "local", "debug"])), ("partition", str),
              ("account", str), ("qos", str), ("constraint", str), ("gpus_per_task", int),
              ("cpus_per_task", int), ("mem_gb", int), ("timeout_min", int),
              ("array_parallelism", int), ("shards_per_task", int), ("max_array_size", int),
              ("log_dir", str))
_EXTRACTION = (("model", str), ("weights", str), ("device", click.Choice(["auto", "cpu", "cuda"])),
               ("precision", click.Choice(["fp32", "fp16", "bf16"])), ("batch_size", int),
               ("workers", int), ("decode", click.Choice(["cpu", "gpu"])))


def _submission_options(f):
    for name, tp in reversed(_RESOURCES + _EXTRACTION):
        f = click.option("--" + name.replace("_", "-"), name, type=tp, default=None)(f)
    f = click.option("--config", "config_path", type=click.Path(path_type=Path),
                     help="Extraction config YAML.")(f)
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Extraction config override.")(f)
    f = click.option("--slurm-config", type=click.Path(path_type=Path), help="Slurm config YAML.")(f)
    f = click.option("--slurm-set", multiple=True, metavar="KEY=VALUE")(f)
    f = click.option("--wait", is_flag=True, help="Wait for the jobs, then report.")(f)
    f = click.option("--dry-run", is_flag=True, help="Print what would be submitted.")(f)
    return click.argument("cache_dir", type=click.Path(path_type=Path, exists=True))(f)


def _submit_and_report(cache_dir, ext, slu, retry, wait, dry_run):
    from xmic.slurm.scheduler import SubmitRefused
    from xmic.slurm.status import format_status, status
    from xmic.slurm.launch import wait as wait_jobs
    from xmic.slurm.submit import submit
    try:
        record, jobs = submit(cache_dir, ext, slu, retry=retry, dry_run=dry_run, echo=click.echo)
    except SubmitRefused as e:  # named as this command takes it
        raise e.spelled(lambda k: "--" + k.replace("_", "-")) from None
    if jobs:
        click.echo("job ids: " + " ".join(a["job_id"] for a in record["arrays"]) +
                   f"; logs in {record['log_dir']}; progress: xmic slurm status {cache_dir}")
    if (wait or slu.executor == "debug") and jobs:  # debug jobs run in this process, on wait
        bad = wait_jobs(jobs)
        cache, _, summary, subs = status(cache_dir)
        click.echo(format_status(cache, summary, subs))
        for b in bad[:20]:
            click.echo(f"  job {b['job_id']}: {b['error']}")
        if bad or summary["failed"] or summary["pending"]:
            sys.exit(1)


@slurm.command("submit")
@_submission_options
def slurm_submit(cache_dir, slurm_config, slurm_set, config_path, sets, wait, dry_run, **opts):
    """Submit every shard that is not committed (or running) as job arrays."""
    from xmic.extract.planning import planned_settings
    from xmic.slurm.config import SlurmConfig, gpu_request
    ext = extract_config(config_path, sets, base=planned_settings(cache_dir),
                         **{k: opts[k] for k, _ in _EXTRACTION})
    given = [f"{k}={v}" for k, _ in _RESOURCES if (v := opts[k]) is not None]
    slu = load_config(SlurmConfig, slurm_config, [*slurm_set, *given],
                      base=gpu_request([ext.device]))
    _submit_and_report(cache_dir, ext, slu, False, wait, dry_run)


@slurm.command("retry")
@_submission_options
def slurm_retry(cache_dir, slurm_config, slurm_set, config_path, sets, wait, dry_run, **opts):
    """Resubmit the shards that are missing or failed (the last submission's settings, or for
    work first run with `xmic extract run` the settings its shards recorded, plus any option
    given here). Committed shards with failed segments are moved aside and redone."""
    from xmic.config import config_to_dict
    from xmic.extract.config import ExtractConfig
    from xmic.slurm.config import SlurmConfig
    from xmic.slurm.submit import last_submission_configs
    ext, slu = last_submission_configs(cache_dir, echo=click.echo)
    ext = load_config(ExtractConfig, config_path, [*sets, *(f"{k}={v}" for k, _ in _EXTRACTION
                                                           if (v := opts[k]) is not None)],
                      base=config_to_dict(ext))
    slu = load_config(SlurmConfig, slurm_config, [*slurm_set, *(f"{k}={v}" for k, _ in _RESOURCES
                                                               if (v := opts[k]) is not None)],
                      base=config_to_dict(slu))
    _submit_and_report(cache_dir, ext, slu, True, wait, dry_run)


@slurm.command("status")
@click.argument("cache_dir", type=click.Path(path_type=Path, exists=True))
@status_options
def slurm_status(cache_dir, as_json, watch, interval):
    """Done / running / failed / pending shards, frames/s, ETA and errors, from the cache."""
    import time

    from xmic.slurm.status import format_status, status
    while True:
        cache, report, summary, subs = status(cache_dir)
        if as_json:
            click.echo(json.dumps({"summary": summary, "shards": report}, indent=1, default=str))
        else:
            click.echo(format_status(cache, summary, subs))
        if not watch or not (summary["running"] or summary["pending"]):
            return
        time.sleep(interval)
        click.echo("")



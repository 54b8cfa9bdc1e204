"""Extraction as job arrays (submitit: slurm | local | debug executors).

``config.SlurmConfig`` (resources), ``submit`` (pick uncommitted shards, group them into array
tasks, split at MaxArraySize, record the submission), ``worker.ShardTask`` (the preemption-safe
callable each task runs), ``status`` (progress from the cache alone). The only package that
imports submitit.
"""

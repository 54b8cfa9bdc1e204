"""xmic: X-MIC on a feature cache. Stages: extract, cache, slurm, train, evaluate (docs/architecture.md)."""

#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
export HF_HUB_OFFLINE=1
# two workers (XMIC_TEST_WORKERS): much of the suite waits on subprocesses and on Slurm; the
# cluster tests share one worker (xdist_group "cluster") and run in turn
exec "$root/.venv/bin/python" -m pytest -q -n "${XMIC_TEST_WORKERS:-2}" --dist loadgroup "$@"

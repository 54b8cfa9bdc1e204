#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
export HF_HUB_OFFLINE=1
exec "$root/.venv/bin/python" -m pytest -q "$@"

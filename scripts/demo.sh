#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `xmic demo` (arguments are passed on).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
export HF_HUB_OFFLINE=1
exec "$root/.venv/bin/xmic" demo "$@"

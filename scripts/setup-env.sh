#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install xmic into it.
# Idempotent: a stamp keyed on setup.cfg skips the install when nothing changed.
# torch is pinned to the build that lies on the project's machines (2.14.1 + torchvision 0.29.1);
# override with XMIC_TORCH_SPEC="torch==X torchvision==Y" elsewhere.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${XMIC_VENV:-$root/.venv}"
torch_spec="${XMIC_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
stamp="$venv/.xmic-installed"
want="$(cat "$root/setup.cfg" | sha256sum | cut -c1-16) $torch_spec"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/xmic" ]; then
  exit 0
fi
echo "[setup-env] creating/updating $venv (first run installs torch; this takes a few minutes)" >&2
python3 -m venv "$venv"
# uv installs the same packages from the same index as pip, several times faster (torch and its
# CUDA libraries: 15 s against 66 s here); where uv cannot be had or fails, pip does it. Bytecode
# is compiled at install, as pip does: with PYTHONDONTWRITEBYTECODE set (as on our machines) a
# venv without it imports torch from source in every process, twice as slow
# shellcheck disable=SC2086
if "$venv/bin/python" -m pip install -q uv >&2 \
    && "$venv/bin/uv" pip install -q --compile-bytecode --python "$venv/bin/python" $torch_spec -e "$root[test]" >&2; then
  :
else
  echo "[setup-env] uv unavailable or failed; installing with pip" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2 || true
  "$venv/bin/python" -m pip install -q $torch_spec >&2
  "$venv/bin/python" -m pip install -q -e "$root[test]" $torch_spec >&2
fi
echo "$want" > "$stamp"

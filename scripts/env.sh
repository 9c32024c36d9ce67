#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating or updating it first.
#   scripts/env.sh python -m vlmtrain +recipe=sft_vqa
#   scripts/env.sh python -m pytest
# The environment is rebuilt when pyproject.toml or this script change (a hash stamp), so a fresh
# clone needs nothing installed by hand. torch/torchvision are pinned to the builds this machine
# class keeps on local disk (pip resolves them offline; any other version would be a multi-GB
# download).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${VLMTRAIN_VENV:-$root/.venv}"
stamp="$venv/.vlmtrain-stamp"
want=$(cat "$root/pyproject.toml" "$root/scripts/env.sh" | sha256sum | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[vlmtrain] preparing $venv (first run takes a few minutes) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip "setuptools>=77" >/dev/null
  "$venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$venv/bin/python" -m pip install -q -e "$root[test]"
  echo "$want" > "$stamp"
  echo "[vlmtrain] environment ready" >&2
fi
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
exec "$@"

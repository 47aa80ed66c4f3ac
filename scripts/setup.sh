#!/usr/bin/env bash
# Create .venv with instmix and its test dependencies. Safe to rerun: it reinstalls only
# when pyproject.toml changed. torch 2.13.0 goes first: this machine has its CPU wheel
# locally, and a looser torch requirement would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.instmix-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (torch 2.13.0 CPU, instmix[dev]) ..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
echo "$want" > "$stamp"

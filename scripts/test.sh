#!/usr/bin/env bash
# The test command: set up .venv if needed, then lint and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the stage contracts in pyproject.toml
.venv/bin/python -m pytest "$@"
[ -n "${INSTMIX_SKIP_INTEGRATION:-}" ] || bash scripts/integration.sh  # trainer packages, own venvs

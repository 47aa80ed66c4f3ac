#!/usr/bin/env bash
# Set up .venv if needed, build the quickstart mixture, verify it and show two documents.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
.venv/bin/instmix build examples/quickstart/mix.yaml
.venv/bin/instmix verify examples/quickstart/out
.venv/bin/instmix inspect examples/quickstart/out --docs 2 --chars 300 --no-summary

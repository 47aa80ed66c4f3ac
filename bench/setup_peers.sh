#!/usr/bin/env bash
# The bench virtualenv for bench/loader.py: instmix's own dependencies plus the peers it is
# measured against (litdata, MosaicML streaming, Hugging Face datasets), kept apart from
# .venv so the peers' pins never touch the project's environment.
#
#   bash bench/setup_peers.sh            # -> .venvs/bench (gitignored)
#   .venvs/bench/bin/python bench/loader.py
#
# torch 2.13.0 goes first and stays pinned through a constraints file: the peers declare
# loose torch requirements and pip would otherwise fetch another torch (several GB of CUDA
# packages). Both peers require torchvision: 0.28.0 is the release built for torch 2.13.0
# (without the pin pip backtracks through every torchvision for minutes). MosaicML
# streaming 0.13 caps numpy below 2.2 (and transformers below 5). The peers' versions are
# pinned: unpinned, pip backtracks through old litdata releases. instmix itself is not
# installed: the bench imports it from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.venvs/bench}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
printf "torch==2.13.0\ntorchvision==0.28.0\n" > "$constraints"
"${pip[@]}" torch==2.13.0
"${pip[@]}" -c "$constraints" numpy tokenizers tiktoken zstandard pyarrow pyyaml tqdm orjson \
  datasets litdata==0.2.76 mosaicml-streaming==0.13.0
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("torch", "numpy", "litdata", "mosaicml-streaming", "datasets", "pyarrow"):
    print(f"{name}=={version(name)}")
PY

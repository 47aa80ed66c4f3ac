#!/usr/bin/env bash
# The integration tier: real trainer packages read what `instmix export` writes.
# Creates one virtualenv per framework under .venvs/ (reused while its recipe and pinned
# constraints are unchanged), then runs tests/integration with them. Extra arguments go to
# pytest; --venvs-only makes the venvs and stops. The build side runs in .venv (scripts/setup.sh); each framework check runs as a
# subprocess with its venv's python.
#
# Every venv installs torch==2.13.0 first and pins it in its constraints: this machine has
# its CPU wheel locally, and any other torch would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
VENVS=${INSTMIX_VENVS:-$PWD/.venvs}
REQ=tests/integration/requirements
mkdir -p "$VENVS"

# pip's local mirrors print "WARNING: Location '...' is ignored" lines; they are harmless.
quiet_pip() { "$1/bin/python" -m pip "${@:2}" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }; }
pipq() { quiet_pip "$1" install -q --disable-pip-version-check "${@:2}"; }

olmo_core() {  # ai2-olmo-core 3.0.0 needs torch>=2.10,<2.14; nothing else special
  pipq "$1" -c "$REQ/olmo-core.txt" ai2-olmo-core==3.0.0
}

olmo() {  # ai2-olmo 0.6.0 needs numpy<2 (hence its own venv) and imports `datasets`
  # without declaring it; the pins keep pyarrow < 24, the last to run on numpy 1.x
  pipq "$1" -c "$REQ/olmo.txt" ai2-olmo==0.6.0 datasets
}

llamafactory() {  # only what llamafactory 0.9.5's pt data path imports (its full
  # requirements pull torchvision/torchaudio builds for another torch, gradio, ...)
  pipq "$1" -c "$REQ/llamafactory.txt" datasets transformers peft accelerate trl omegaconf \
    pyyaml pandas packaging safetensors
  # llamafactory/data/mm_plugin.py imports torchaudio at module level but uses it only
  # for audio inputs. No torchaudio build for torch 2.13 exists: install 2.11 without its
  # dependencies and drop its CUDA-linked extension libraries, so it imports as Python.
  # --no-deps leaves llamafactory's other requirements out, on purpose; pip may say so.
  pipq "$1" -c "$REQ/llamafactory.txt" --no-deps llamafactory==0.9.5 torchaudio==2.11.0 |
    { grep -v -e "^ERROR: pip's dependency resolver" -e "^llamafactory 0.9.5 requires" \
        -e "^torchaudio 2.11.0 requires" || true; }
  rm -f "$1"/lib/python3*/site-packages/torchaudio/lib/*.so
}

ensure_venv() {  # name recipe: (re)create .venvs/name when its recipe or pins changed
  local dir=$VENVS/$1 stamp=$VENVS/$1/.instmix-stamp want
  want=$( { declare -f "$2"; cat "$REQ/$1.txt"; } | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "setting up $dir ..." >&2
  local t0=$SECONDS
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  pipq "$dir" torch==2.13.0
  "$2" "$dir"
  echo "$want" > "$stamp"
  echo "  $1 ready in $((SECONDS - t0)) s" >&2
}

ensure_venv olmo-core olmo_core
ensure_venv olmo olmo
ensure_venv llamafactory llamafactory
[ "${1:-}" != "--venvs-only" ] || exit 0

INSTMIX_INTEGRATION=1 INSTMIX_VENVS=$VENVS .venv/bin/python -m pytest tests/integration "$@"

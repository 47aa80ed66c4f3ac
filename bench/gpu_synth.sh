#!/usr/bin/env bash
# Synthesis on one lent GPU, all within 10 minutes: the real synthesizer through vLLM
# (M=3, max_model_len 4096, max_new_tokens 400, max_num_seqs 256), without and with n-gram
# speculation (K=4), each in its own process. Prints raw tokens/s per GPU, GPU-hours per
# 1B raw tokens, the prefix-cache hit rate and the ratio to the published figure.
#
#   bash bench/gpu_synth.sh [/path/to/instruction-synthesizer]
#
# Needs on that machine (nothing is downloaded): a Python with vLLM and instmix's
# requirements (PYTHON=...), and the synthesizer's weights folder (config.json,
# safetensors, tokenizer). Results: $OUT/gpu_synth.json (default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/models/instruction-synthesizer}
PY=${PYTHON:-python}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c "import vllm; print('vllm', vllm.__version__)"
if [ ! -f "$MODEL/config.json" ]; then
  echo "gpu_synth: no weights at $MODEL (pass the synthesizer's folder)" >&2
  exit 3
fi
# two engine loads (~1-2 min each) and ~1,200 documents per run fit in 9 minutes
timeout 540 "$PY" bench/synth.py --engine vllm --model "$MODEL" --docs 1200 --rounds 3 \
  --max-num-seqs 256 --spec-k 4 --json "$OUT/gpu_synth.json"
cat "$OUT/gpu_synth.json"

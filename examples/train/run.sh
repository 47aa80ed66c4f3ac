#!/usr/bin/env bash
# From a build to training in one command, on CPU: build examples/train/mix.yaml, export it
# for a trainer, check the trainer's config against the build, and train a tiny random-init
# model for a few steps (nothing is downloaded).
#   bash examples/train/run.sh [olmo-core|llamafactory|olmo]     (default: olmo-core)
# The trainer runs in its own venv ($INSTMIX_VENVS/<trainer>, default .venvs/), made by
# scripts/integration.sh --venvs-only when missing. Rerunning continues from the last
# checkpoint in examples/train/runs/<trainer>/ (remove that folder to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRAINER=${1:-olmo-core}
VENVS=${INSTMIX_VENVS:-$PWD/.venvs}
BUILD=examples/train/out
RUN=examples/train/runs/$TRAINER
STEPS=${STEPS:-20}
case $TRAINER in olmo-core|llamafactory|olmo) ;; *)
  echo "usage: $0 [olmo-core|llamafactory|olmo]" >&2; exit 2;; esac
bash scripts/setup.sh
[ -x "$VENVS/$TRAINER/bin/python" ] || INSTMIX_VENVS=$VENVS bash scripts/integration.sh --venvs-only
instmix() { .venv/bin/python -m instmix "$@"; }
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

instmix build examples/train/mix.yaml --no-progress
mkdir -p "$RUN"
case $TRAINER in
olmo-core)
  instmix export olmo-core "$BUILD" --seq-len 256 --out "$RUN/export"
  instmix export olmo-core "$BUILD" --check "$RUN/export/olmo_core_fsl.yaml"
  "$VENVS/olmo-core/bin/python" -W ignore integrations/olmo-core/train.py "$RUN/export" \
    --save-folder "$RUN/checkpoints" --steps "$STEPS" --save-interval 10 --batch 4 \
    --d-model 32 --layers 1 --lr 1e-2 --record "$RUN/steps.jsonl" 2>&1 |
    grep -E "train/CE loss|Training complete|Saving checkpoint" || true
  ;;
llamafactory)
  .venv/bin/python examples/train/tiny_llama.py "$BUILD" "$RUN/model"  # tokenizer + config.json
  instmix export llamafactory "$BUILD" --seq-len 256 --routes tokenized --model "$RUN/model" \
    --out "$RUN/export"
  instmix export llamafactory "$BUILD" --check "$RUN/export/llamafactory_pt_tokenized.yaml"
  "$VENVS/llamafactory/bin/llamafactory-cli" train "$RUN/export/llamafactory_pt_tokenized.yaml" \
    train_from_scratch=true max_steps="$STEPS" save_steps=10 logging_steps=1 \
    per_device_train_batch_size=4 gradient_accumulation_steps=1 learning_rate=0.01 \
    lr_scheduler_type=constant output_dir="$RUN/checkpoints" overwrite_output_dir=false \
    disable_tqdm=true 2>&1 | grep -E "'loss'|train_loss|Training completed" || true
  ;;
olmo)
  instmix export olmo "$BUILD" --seq-len 256 --out "$RUN/export"
  "$VENVS/olmo/bin/python" integrations/olmo/merge.py integrations/olmo/train-instmix.yaml \
    "$RUN/export/olmo-data.yaml" > "$RUN/train.yaml"
  instmix export olmo "$BUILD" --check "$RUN/train.yaml"
  "$VENVS/olmo/bin/python" -W ignore integrations/olmo/train_cpu.py "$RUN/train.yaml" \
    --save-folder "$RUN/checkpoints" --steps "$STEPS" --save-interval 10 \
    --record "$RUN/steps.jsonl" model.d_model=32 model.n_heads=2 model.n_layers=1 \
    model.mlp_ratio=2 global_train_batch_size=4 optimizer.learning_rate=0.02 \
    optimizer.weight_decay=0 data.num_workers=0 data.persistent_workers=false \
    data.prefetch_factor=null
  ;;
esac
if [ -f "$RUN/steps.jsonl.rank0" ]; then mv "$RUN/steps.jsonl.rank0" "$RUN/steps.jsonl"; fi
[ ! -f "$RUN/steps.jsonl" ] || .venv/bin/python -c "
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f'loss {rows[0][\"loss\"]:.2f} (step {rows[0][\"step\"]}) -> {rows[-1][\"loss\"]:.2f} '
      f'(step {rows[-1][\"step\"]}); per-step records in {sys.argv[1]}')" "$RUN/steps.jsonl"
echo "done: $TRAINER trained on $BUILD; checkpoints in $RUN/checkpoints"

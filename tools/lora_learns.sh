#!/usr/bin/env bash
# "It learns", the full run: writes the synthetic data sets, trains a small model from scratch to
# copy letters (configs/tasks/pretrain.yaml), then teaches it a task it has never seen (shift each
# letter to the next one) with LoRA (configs/tasks/lora.yaml) and with QLoRA on its 4-bit NF4
# quantization (configs/tasks/qlora.yaml), and prints the exact-match accuracy on a held-out split
# before and after. Everything goes to out/lora_learns/ (removed first).
#   tools/lora_learns.sh [BUILD_DIR]     (default: build)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(realpath "${1:-$ROOT/build}")
SHARDLAB="$BUILD/tools/shardlab"
[ -x "$SHARDLAB" ] || { echo "lora_learns: $SHARDLAB is missing; build first (tools/run_main.sh)" >&2; exit 1; }
cd "$ROOT"
OUT=out/lora_learns
rm -rf "$OUT"
mkdir -p "$OUT/data"

# Train and test splits are disjoint by construction (a hash of each example decides its split).
"$SHARDLAB" synth-data --task copy --n 8000 --seed 1 --split train --out "$OUT/data/copy_train.jsonl"
"$SHARDLAB" synth-data --task copy --n 500 --seed 2 --split test --out "$OUT/data/copy_test.jsonl"
"$SHARDLAB" synth-data --task shift --n 8000 --seed 3 --split train --out "$OUT/data/shift_train.jsonl"
"$SHARDLAB" synth-data --task shift --n 500 --seed 4 --split test --out "$OUT/data/shift_test.jsonl"

accuracy() {  # accuracy LABEL ARGS...: prints "LABEL: <accuracy JSON>"
  local label=$1; shift
  echo "$label: $("$SHARDLAB" accuracy "$@" --show 0)"
}

"$SHARDLAB" train configs/tasks/pretrain.yaml > "$OUT/pretrain.log"
"$SHARDLAB" train configs/tasks/lora.yaml > "$OUT/lora.log"
"$SHARDLAB" train configs/tasks/qlora.yaml > "$OUT/qlora.log"

echo
echo "held-out exact match (greedy), 500 examples each:"
accuracy "base, copy (its pretraining task)" configs/tasks/pretrain.yaml --data "$OUT/data/copy_test.jsonl"
accuracy "base, shift (before LoRA)" configs/tasks/lora.yaml --no-adapter --data "$OUT/data/shift_test.jsonl"
accuracy "base + LoRA, shift (after)" configs/tasks/lora.yaml --data "$OUT/data/shift_test.jsonl"
accuracy "4-bit NF4 base, shift (before QLoRA)" configs/tasks/qlora.yaml --no-adapter --data "$OUT/data/shift_test.jsonl"
accuracy "4-bit NF4 base + QLoRA, shift (after)" configs/tasks/qlora.yaml --data "$OUT/data/shift_test.jsonl"

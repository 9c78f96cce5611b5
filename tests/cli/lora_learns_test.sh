#!/usr/bin/env bash
# The fast "it learns" check (the full run is tools/lora_learns.sh): a 2-layer byte-level model
# trained from scratch to copy letters scores ~0 on a held-out task it never saw (shift each
# letter to the next one); LoRA, and QLoRA on its 4-bit NF4 quantization, must lift held-out exact
# match by at least 50 points. Measured with these seeds: copy 100%, shift 0% -> LoRA 100%, QLoRA 100%.
#   tests/cli/lora_learns_test.sh path/to/shardlab
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$SHARDLAB" synth-data --task copy --n 3000 --seed 1 --split train --out copy_train.jsonl > /dev/null &&
"$SHARDLAB" synth-data --task copy --n 100 --seed 2 --split test --out copy_test.jsonl > /dev/null &&
"$SHARDLAB" synth-data --task shift --n 3000 --seed 3 --split train --out shift_train.jsonl > /dev/null &&
"$SHARDLAB" synth-data --task shift --n 100 --seed 4 --split test --out shift_test.jsonl > /dev/null ||
  { bad "synth-data"; exit 1; }

common() {  # the data set and schedule every run shares
  cat <<YAML
datasets:
  - path: $1
    type:
      format: "{instruction}\n{input}\n"
sequence_len: 128
sample_packing: true
micro_batch_size: 16
max_steps: $2
learning_rate: $3
lr_scheduler: cosine
warmup_steps: 10
seed: 1
logging_steps: 50
YAML
}
{ cat <<YAML
model_config:
  hidden_size: 64
  intermediate_size: 192
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 4
  max_position_embeddings: 128
tokenizer: byte
output_dir: base
YAML
  common copy_train.jsonl 250 0.003; } > pretrain.yaml
for kind in lora qlora; do
  { printf 'base_model: base\noutput_dir: %s\nadapter: %s\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n' $kind $kind
    [ $kind = qlora ] && echo "load_in_4bit: true"
    common shift_train.jsonl 150 0.01; } > $kind.yaml
done

for run in pretrain lora qlora; do
  "$SHARDLAB" train $run.yaml > $run.log 2>&1 || { bad "train $run: $(tail -3 $run.log)"; exit 1; }
done

# accuracy VAR ARGS...: sets VAR to the accuracy (a decimal in [0, 1]) that `shardlab accuracy`
# prints (0, and a failed check, when it fails).
accuracy() {
  local var=$1; shift
  local out
  if out=$("$SHARDLAB" accuracy "$@" --show 0 2>&1); then
    printf -v "$var" '%s' "$(echo "$out" | sed -n 's/.*"accuracy":\([0-9.e-]*\).*/\1/p')"
  else bad "accuracy $var: $out"; printf -v "$var" 0; fi
}
accuracy copy pretrain.yaml --data copy_test.jsonl
accuracy before lora.yaml --no-adapter --data shift_test.jsonl
accuracy lora lora.yaml --data shift_test.jsonl
accuracy before_nf4 qlora.yaml --no-adapter --data shift_test.jsonl
accuracy qlora qlora.yaml --data shift_test.jsonl
echo "copy (pretraining task): $copy; shift: base $before -> LoRA $lora; 4-bit base $before_nf4 -> QLoRA $qlora"

check() {  # check "DESCRIPTION" AWK_CONDITION
  if awk "BEGIN { exit !($2) }"; then ok "$1"; else bad "$1 ($2)"; fi
}
check "the base learned its pretraining task" "$copy >= 0.8"
check "the base cannot shift" "$before <= 0.05 && $before_nf4 <= 0.05"
check "LoRA lifts held-out shift accuracy by >= 50 points" "$lora - $before >= 0.5"
check "QLoRA lifts held-out shift accuracy by >= 50 points" "$qlora - $before_nf4 >= 0.5"
grep -q "adapter: qlora" qlora.log && grep -q "trainable" qlora.log && ok "qlora run reports its adapter" ||
  bad "qlora run did not report its adapter: $(grep -m1 adapter qlora.log)"
finish lora_learns_test

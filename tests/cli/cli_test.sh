#!/usr/bin/env bash
# End-to-end checks of the shardlab command: a tiny train -> eval -> generate -> resume round, and
# every bad input the Llama issue lists failing with one clear line, a non-zero exit, and
# output_dir left exactly as it was.
#   tests/cli/cli_test.sh path/to/shardlab
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tiny_corpus 120
base_config() {  # write_config FILE [extra yaml lines...] writes this, then the lines
  tiny_config 128
  cat <<YAML
val_set_size: 0.1
sequence_len: 128
sample_packing: true
micro_batch_size: 2
max_steps: 6
learning_rate: 0.005
lr_scheduler: cosine
warmup_steps: 1
logging_steps: 2
save_steps: 3
YAML
}

# 1. A tiny training run, then eval, generate and resume on its output.
write_config good.yaml "output_dir: run1"
if "$SHARDLAB" train good.yaml > train.log 2> train.err; then ok "train runs"; else bad "train runs: $(tail -3 train.err)"; fi
for f in config.json model.safetensors tokenizer.json log.jsonl checkpoint-3/trainer_state.json checkpoint-6/optimizer.safetensors; do
  [ -f "run1/$f" ] && ok "train wrote $f" || bad "train wrote $f"
done
grep -q "global batch: 2 sequences" train.log && ok "resolved config names the global batch" || bad "global batch line"
grep -q "^learning_rate: 0.005" train.log && ok "resolved config printed" || bad "resolved config printed"
[ "$(wc -l < run1/log.jsonl)" -eq 6 ] && ok "one JSONL log line per step" || bad "JSONL lines: $(wc -l < run1/log.jsonl)"
grep -q "loss curve" train.log && grep -q "memory ledger" train.log && ok "loss curve and ledger printed" || bad "curve/ledger"

printf '{"text": "Once upon a time, Tom went to the park."}\n{"input_ids": [256, 79, 110, 99, 101]}\n' > eval.jsonl
if "$SHARDLAB" eval --model run1 --data eval.jsonl --dump-logits logits.safetensors > eval.out 2> eval.err \
   && grep -q '"mean_loss"' eval.out && grep -q '"num_sequences":2' eval.out && [ -f logits.safetensors ]; then
  ok "eval prints one JSON line and dumps logits"
else bad "eval: $(cat eval.out eval.err | head -c 400)"; fi
if "$SHARDLAB" generate --model run1 --prompt "Once upon" --max-new-tokens 10 > gen.out 2> gen.err && grep -q "^Once upon" gen.out; then
  ok "generate continues the prompt"
else bad "generate: $(cat gen.out gen.err | head -c 300)"; fi

write_config resume.yaml "output_dir: run1" "resume_from_checkpoint: run1/checkpoint-3"
if "$SHARDLAB" train resume.yaml > resume.log 2> resume.err && grep -q "resumed from run1/checkpoint-3 at step 3" resume.log; then
  # Steps 4..6 of the resumed run reproduce the first run's losses exactly.
  a=$(grep -o '"step":[4-6],"loss":[^,]*' run1/log.jsonl | head -3 | tr '\n' ' ')
  b=$(grep -o '"step":[4-6],"loss":[^,]*' run1/log.jsonl | tail -3 | tr '\n' ' ')
  [ "$a" = "$b" ] && ok "resume reproduces the losses" || bad "resume losses differ: $a vs $b"
else bad "resume: $(tail -2 resume.err)"; fi

# Activation checkpointing recomputes layers in backward: the losses must not change at all.
write_config ckpt.yaml "output_dir: run_ckpt" "gradient_checkpointing: true"
if "$SHARDLAB" train ckpt.yaml > ckpt.log 2> ckpt.err; then
  a=$(grep -o '"loss":[^,]*' run1/log.jsonl | head -6 | tr '\n' ' ')
  b=$(grep -o '"loss":[^,]*' run_ckpt/log.jsonl | tr '\n' ' ')
  [ "$a" = "$b" ] && ok "gradient_checkpointing gives identical losses" || bad "checkpointing losses differ: $a vs $b"
else bad "gradient_checkpointing train: $(tail -2 ckpt.err)"; fi

# 16-bit training and the 8-bit optimizer: each run trains (last loss below the first).
printf '{"fp16": {"enabled": true, "initial_scale_power": 12, "hysteresis": 1}, "zero_optimization": {"stage": 0}}\n' > ds.json
for variant in "bf16: true" "fp16: true" "deepspeed: ds.json" "optimizer: adamw_8bit" "optimizer: adamw_bnb_8bit"; do
  out="run_$(echo "$variant" | tr -cd 'a-z0-9')"
  write_config v.yaml "output_dir: $out" "$variant"
  sed -i 's/max_steps: 6/max_steps: 12/' v.yaml
  if "$SHARDLAB" train v.yaml > v.log 2> v.err; then
    first=$(grep -o '"loss":[^,]*' "$out/log.jsonl" | head -1 | cut -d: -f2)
    last=$(grep -o '"loss":[^,]*' "$out/log.jsonl" | tail -1 | cut -d: -f2)
    if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then ok "$variant trains ($first -> $last)"
    else bad "$variant does not train: $first -> $last"; fi
  else bad "$variant: $(tail -2 v.err)"; fi
done

# shardlab memory measures 8 variants by running steps (each gets one estimate-vs-measured row, the
# adapter rows end in lora/qlora); 8-bit AdamW holds ~2 bytes/param of state.
if "$SHARDLAB" memory good.yaml > mem.out 2> mem.err \
   && [ "$(grep -cE '^est (f32|bf16\+masters)( ckpt)? adamw(8bit)? +[0-9]' mem.out)" -eq 8 ] \
   && grep -qE '^f32 adamw8bit +4\.000 +4\.000 +2\.[0-9]+' mem.out; then ok "memory prints every variant"
else bad "memory: $(head -c 300 mem.err)"; fi

# LoRA on run1: the output and checkpoints are PEFT adapters, resume is exact, and the merged model
# scores exactly the adapter run's final eval loss (one repeated record makes the val split known).
for i in $(seq 1 20); do echo '{"text": "Tom has a red ball. He likes to play."}'; done > same.jsonl
write_lora() {  # write_lora FILE [extra yaml lines...]
  local f=$1; shift
  printf 'base_model: run1\ndatasets:\n  - path: same.jsonl\n    type: completion\nval_set_size: 0.1\n' > "$f"
  printf 'sequence_len: 128\nmicro_batch_size: 2\nmax_steps: 4\nlearning_rate: 0.01\nsave_steps: 2\n' >> "$f"
  printf 'adapter: lora\nlora_r: 4\nlora_alpha: 8\n' >> "$f"
  for line in "$@"; do echo "$line" >> "$f"; done
}
write_lora lora.yaml "output_dir: run_lora" "lora_target_modules: [q_proj, v_proj]"
if "$SHARDLAB" train lora.yaml > lora.log 2> lora.err; then ok "LoRA train runs"; else bad "LoRA train: $(tail -2 lora.err)"; fi
for f in adapter_config.json adapter_model.safetensors checkpoint-2/adapter_model.safetensors checkpoint-4/optimizer.safetensors; do
  [ -f "run_lora/$f" ] && ok "LoRA run wrote $f" || bad "LoRA run wrote $f"
done
[ ! -e run_lora/model.safetensors ] && [ ! -e run_lora/checkpoint-2/model.safetensors ] && ok "LoRA run keeps no copy of the base" \
  || bad "LoRA run wrote a full model"
grep -q '"peft_type": "LORA"' run_lora/adapter_config.json && grep -q "adapter: lora r=4 alpha=8 dropout=0 on 4 modules (q_proj, v_proj)" lora.log \
  && ok "PEFT config written and adapter summary printed" || bad "PEFT config / adapter summary"
write_lora lora_resume.yaml "output_dir: run_lora" "lora_target_modules: [q_proj, v_proj]" "resume_from_checkpoint: run_lora/checkpoint-2"
if "$SHARDLAB" train lora_resume.yaml > lora_resume.log 2> lora_resume.err; then
  a=$(grep -o '"step":[34],"loss":[^,]*' run_lora/log.jsonl | head -2 | tr '\n' ' ')
  b=$(grep -o '"step":[34],"loss":[^,]*' run_lora/log.jsonl | tail -2 | tr '\n' ' ')
  [ "$a" = "$b" ] && ok "LoRA resume reproduces the losses" || bad "LoRA resume losses differ: $a vs $b"
else bad "LoRA resume: $(tail -2 lora_resume.err)"; fi
if "$SHARDLAB" merge --model run1 --adapter run_lora --out merged > merge.out 2> merge.err && [ -f merged/model.safetensors ]; then
  ok "merge writes a model"
else bad "merge: $(cat merge.out merge.err | head -c 300)"; fi
ids=$(printf '%s' "Tom has a red ball. He likes to play." | od -An -tu1 | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
echo "{\"input_ids\": [256,$ids,257]}" > same_ids.jsonl
want=$(grep -o '"eval_loss":[^,}]*' run_lora/log.jsonl | tail -1 | cut -d: -f2)
got=$("$SHARDLAB" eval --model merged --data same_ids.jsonl 2>&1 | grep -o '"mean_loss":[^,]*' | cut -d: -f2)
base=$("$SHARDLAB" eval --model run1 --data same_ids.jsonl 2>&1 | grep -o '"mean_loss":[^,]*' | cut -d: -f2)
if awk -v g="$got" -v w="$want" -v b="$base" 'BEGIN { d = g - w; e = b - w; exit !(g != "" && d * d <= 1e-12 * w * w && e * e > 1e-8) }'; then
  ok "merged model's eval loss equals the adapter run's ($got vs $want; base $base)"
else bad "merged eval loss $got, adapter run $want, base $base"; fi

# QLoRA: the same adapter on a 4-bit NF4 copy of run1 (f32 and bf16 compute) trains, and its adapter
# merges into the full-precision base.
for variant in "bf16: false" "bf16: true"; do
  out="run_qlora_$(echo "$variant" | tr -cd 'a-z0-9')"
  write_lora q.yaml "output_dir: $out" "lora_target_linear: true" "$variant"
  sed -i 's/adapter: lora/adapter: qlora\nload_in_4bit: true/; s/max_steps: 4/max_steps: 8/' q.yaml
  if "$SHARDLAB" train q.yaml > q.log 2> q.err && [ -f "$out/adapter_model.safetensors" ]; then
    first=$(grep -o '"loss":[^,]*' "$out/log.jsonl" | head -1 | cut -d: -f2)
    last=$(grep -o '"loss":[^,]*' "$out/log.jsonl" | tail -1 | cut -d: -f2)
    if awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then ok "QLoRA $variant trains ($first -> $last)"
    else bad "QLoRA $variant does not train: $first -> $last"; fi
  else bad "QLoRA $variant: $(tail -2 q.err)"; fi
done
if "$SHARDLAB" merge --model run1 --adapter run_qlora_bf16false --out merged_q > /dev/null 2> merge_q.err; then
  ok "a QLoRA adapter merges into the full-precision base"
else bad "QLoRA merge: $(head -c 300 merge_q.err)"; fi

# 2. Bad inputs: one line naming the culprit, non-zero exit, nothing written.
printf 'learning_rate: [1, 2\nseed: 3\n' > malformed.yaml
expect_error "malformed YAML" "malformed.yaml" "$SHARDLAB" train malformed.yaml
write_config typo.yaml "output_dir: typo" "learnig_rate: 0.1"
expect_error "unknown key suggests the nearest" "did you mean 'learning_rate'" "$SHARDLAB" train typo.yaml
printf 'base_model: no/such/dir\ndatasets:\n  - path: corpus.jsonl\n    type: completion\noutput_dir: o2\n' > missing.yaml
expect_error "missing model directory" "no/such/dir" "$SHARDLAB" train missing.yaml
[ ! -e o2 ] && ok "missing model: output_dir not created" || bad "missing model: output_dir created"

mkdir -p badmodel && cp run1/config.json badmodel/ && cp run1/tokenizer.json badmodel/
head -c 3000 run1/model.safetensors > badmodel/model.safetensors
printf 'base_model: badmodel\ndatasets:\n  - path: corpus.jsonl\n    type: completion\nsequence_len: 64\noutput_dir: o3\n' > trunc.yaml
expect_error "truncated safetensors" "model.safetensors" "$SHARDLAB" train trunc.yaml
cp run1/model.safetensors badmodel/model.safetensors && rm badmodel/tokenizer.json
expect_error "missing tokenizer" "tokenizer.json" "$SHARDLAB" train trunc.yaml
sed 's/"hidden_size": 32/"hidden_size": 40/' run1/config.json > badmodel/config.json && cp run1/tokenizer.json badmodel/
expect_error "wrong tensor shape" "expects" "$SHARDLAB" train trunc.yaml

: > empty.jsonl
write_config empty.yaml "output_dir: o4"
sed -i 's/path: corpus.jsonl/path: empty.jsonl/' empty.yaml
expect_error "empty dataset" "empty.jsonl" "$SHARDLAB" train empty.yaml
write_config long.yaml "output_dir: o5"
sed -i 's/sequence_len: 128/sequence_len: 512/' long.yaml
expect_error "sequence longer than max_position_embeddings" "max_position_embeddings" "$SHARDLAB" train long.yaml
write_config nan.yaml "output_dir: o6" "max_grad_norm: 0"
sed -i 's/learning_rate: 0.005/learning_rate: 1000000000.0/' nan.yaml
expect_error "loss that turns NaN" "at step" "$SHARDLAB" train nan.yaml

before=$(find run1 -type f -exec md5sum {} + | sort | md5sum)
write_config again.yaml "output_dir: run1"
expect_error "non-empty output_dir is refused" "already has files" "$SHARDLAB" train again.yaml
after=$(find run1 -type f -exec md5sum {} + | sort | md5sum)
[ "$before" = "$after" ] && ok "output_dir untouched" || bad "output_dir changed"
expect_error "unknown option" "did you mean '--model'" "$SHARDLAB" eval --modle run1 --data eval.jsonl
printf '{"input_ids": [1, 900]}\n' > oov.jsonl
expect_error "token id outside the vocabulary" "900" "$SHARDLAB" eval --model run1 --data oov.jsonl

write_lora lora_bad.yaml "output_dir: o7" "lora_target_modules: [q_proj, w_proj]"
expect_error "unknown LoRA target module" "LoRA: target module 'w_proj' matches no module of the model" "$SHARDLAB" train lora_bad.yaml
[ ! -e o7 ] && ok "unknown target: output_dir not created" || bad "unknown target: output_dir created"
write_lora lora_none.yaml "output_dir: o8"
expect_error "adapter without targets" "adapter lora needs targets" "$SHARDLAB" train lora_none.yaml
write_lora q_bad.yaml "output_dir: o10" "lora_target_linear: true" "bnb_4bit_compute_dtype: bfloat16"
sed -i 's/adapter: lora/adapter: qlora\nload_in_4bit: true/' q_bad.yaml
expect_error "QLoRA compute dtype against the precision" "bnb_4bit_compute_dtype bfloat16 disagrees" "$SHARDLAB" train q_bad.yaml
expect_error "merge into a non-empty directory" "already has files" "$SHARDLAB" merge --model run1 --adapter run_lora --out run1
expect_error "merge without an adapter" "has no adapter_config.json" "$SHARDLAB" merge --model run1 --adapter run1 --out o9

finish cli_test

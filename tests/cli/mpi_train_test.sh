#!/usr/bin/env bash
# `mpirun -np 2 shardlab train` end to end: a ZeRO-2 DeepSpeed config trains on 2 ranks, rank 0
# alone prints and writes, and its step-1 loss equals a single process's on the same global batch
# (micro_batch_size 2 x 2 ranks = one process with micro_batch_size 4); Axolotl's FSDP keys pick the
# preset (no_shard -> ddp, shard_grad_op -> zero2, full_shard and DeepSpeed stage 3 -> zero3,
# hybrid_shard) with the same step-1 loss on 2 and 4 ranks, cpu_ram_efficient_loading and
# SHARDED_STATE_DICT checkpoints work;
# `shardlab explain` plans the collectives the run's ledger counts; a train_batch_size that
# contradicts micro x accumulation x world size, offload (the model lives on the CPU) and deepspeed
# with fsdp fail with one clear message.
#   tests/cli/mpi_train_test.sh path/to/shardlab
# Tolerance: the step-1 loss is computed from identical parameters on identical rows; only the
# order in which per-rank token-loss sums are added differs, so f32 rounding bounds the
# difference: |a - b| <= 1e-5 x max(1, |b|).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tiny_corpus 64
cp "$ROOT/tests/tools/deepspeed/zero2_no_offload.json" zero2.json
base_config() {  # write_config FILE [extra yaml lines...] writes this, then the lines
  tiny_config 64
  cat <<YAML
sequence_len: 64
max_steps: 3
learning_rate: 0.005
lr_scheduler: constant
logging_steps: 1
YAML
}
step1_loss() { grep -o '"loss":[^,}]*' "$1/log.jsonl" | head -1 | cut -d: -f2; }

# 1. Two ranks with ZeRO-2, and one process on the same global batch.
write_config two.yaml "output_dir: run2" "micro_batch_size: 2" "deepspeed: zero2.json" "ddp_timeout: 77" "save_steps: 2"
# ddp_timeout sets the collective timeout (the environment's SHARDLAB_COLLECTIVE_TIMEOUT_S would override it).
if (unset SHARDLAB_COLLECTIVE_TIMEOUT_S; "${MPIRUN[@]}" "$SHARDLAB" train two.yaml > two.log 2> two.err); then
  ok "mpirun -np 2 train (zero2) runs"
else bad "mpirun -np 2 train: $(tail -5 two.err)"; fi
write_config one.yaml "output_dir: run1" "micro_batch_size: 4"
if "$SHARDLAB" train one.yaml > one.log 2> one.err; then ok "single-process train runs"
else bad "single-process train: $(tail -3 one.err)"; fi

for f in config.json model.safetensors log.jsonl; do
  [ -s "run2/$f" ] && ok "rank 0 wrote $f" || bad "run2/$f missing"
done
n=$(grep -c '^step 1/3' two.log)
[ "$n" -eq 1 ] && ok "one progress line per step (rank 0 only)" || bad "step 1 printed $n times"
grep -q 'world size 2 (mpi), preset zero2' two.log && ok "the run names world size 2 and zero2" \
  || bad "no 'world size 2 (mpi), preset zero2' line in the output"
grep -q 'collective timeout 77 s' two.log && ok "ddp_timeout sets the collective timeout" || bad "ddp_timeout not applied"
grep -q 'memory ledger' two.log && grep -qi 'rank 1' two.log && ok "per-rank memory ledger printed" \
  || bad "no per-rank memory ledger"
grep -qi 'communication' two.log && grep -q 'reduce_scatter' two.log && ok "communication ledger printed" \
  || bad "no communication ledger with reduce_scatter"

a=$(step1_loss run2)
b=$(step1_loss run1)
if within_rel "$a" "$b" 1e-5; then
  ok "step-1 loss: 2 ranks $a = 1 process $b (within 1e-5 relative)"
else bad "step-1 loss differs: 2 ranks '$a' vs 1 process '$b'"; fi

# Resuming the 2-rank run from its step-2 checkpoint (one optimizer shard and data position per
# rank) reproduces step 3 exactly.
write_config resume.yaml "output_dir: run2r" "micro_batch_size: 2" "deepspeed: zero2.json" \
  "resume_from_checkpoint: run2/checkpoint-2"
if "${MPIRUN[@]}" "$SHARDLAB" train resume.yaml > resume.log 2> resume.err; then
  a=$(grep -o '"loss":[^,}]*' run2/log.jsonl | sed -n 3p)
  b=$(grep -o '"loss":[^,}]*' run2r/log.jsonl | tail -1)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok "2-rank resume reproduces step 3 ($a)" || bad "resumed step 3 '$b' != '$a'"
else bad "2-rank resume: $(tail -3 resume.err)"; fi

# 2. World size 1 without mpirun takes the same ZeRO config.
write_config solo.yaml "output_dir: run_solo" "micro_batch_size: 4" "deepspeed: zero2.json"
if "$SHARDLAB" train solo.yaml > solo.log 2> solo.err; then ok "zero2 config without mpirun (world size 1)"
else bad "zero2 without mpirun: $(tail -3 solo.err)"; fi

# 3. Errors: a contradicting train_batch_size names both keys and the three factors; offload names
# its key. Nothing is written to output_dir.
printf '{"train_batch_size": 6, "zero_optimization": {"stage": 1}}\n' > bad_batch.json
write_config bad.yaml "output_dir: run_bad" "micro_batch_size: 2" "gradient_accumulation_steps: 2" "deepspeed: bad_batch.json"
expect_failure "train_batch_size contradiction" \
  "train_batch_size is 6 but train_micro_batch_size_per_gpu (micro_batch_size) 2 x gradient_accumulation_steps 2 x world size 2 = 8" \
  "${MPIRUN[@]}" "$SHARDLAB" train bad.yaml
[ ! -e run_bad ] && ok "contradiction: output_dir not created" || bad "contradiction: output_dir created"

cp "$ROOT/tests/tools/deepspeed/axolotl_zero3_bf16_cpuoffload_params.json" z3_offload.json
write_config z3.yaml "output_dir: run_z3" "deepspeed: z3_offload.json"
expect_failure "DeepSpeed offload_param" \
  "zero_optimization.offload_param.device cpu: offload needs the model on a CUDA device; this run is on the CPU" \
  "${MPIRUN[@]}" "$SHARDLAB" train z3.yaml
write_config fsdp_offload.yaml "output_dir: run_fo" "fsdp: [shard_grad_op, offload]"
expect_failure "FSDP offload" "fsdp_config.offload_params (or fsdp: [offload]): offload needs the model on a CUDA device" \
  "${MPIRUN[@]}" "$SHARDLAB" train fsdp_offload.yaml
write_config both.yaml "output_dir: run_both" "deepspeed: zero2.json" "fsdp: [full_shard]"
expect_error "deepspeed with fsdp" "deepspeed and fsdp are alternatives" "$SHARDLAB" train both.yaml

# FSDP units are decoder layers: no auto_wrap (FSDP1) and SIZE_BASED_WRAP are errors for full_shard.
write_config nowrap.yaml "output_dir: run_nowrap" "fsdp: [full_shard]"
expect_error "full_shard without auto_wrap" "fsdp FULL_SHARD without auto_wrap would make the whole model one unit" \
  "$SHARDLAB" train nowrap.yaml
write_config sizewrap.yaml "output_dir: run_sizewrap" "fsdp: [full_shard, auto_wrap]" "fsdp_config:" \
  "  fsdp_auto_wrap_policy: SIZE_BASED_WRAP" "  fsdp_min_num_params: 1000"
expect_error "SIZE_BASED_WRAP" "SIZE_BASED_WRAP with FULL_SHARD is not supported" "$SHARDLAB" train sizewrap.yaml

# 4. Axolotl's FSDP keys: the strategy picks the preset, and the step-1 loss equals one process's
# (2 ranks x micro 2, 4 ranks x micro 1 = one process x micro 4).
fsdp_run() {  # fsdp_run NAME NP MICRO PRESET_WORD "fsdp yaml line" [more yaml lines...]
  local name=$1 np=$2 micro=$3 preset=$4; shift 4
  write_config "$name.yaml" "output_dir: run_$name" "micro_batch_size: $micro" "$@"
  if mpirun_np "$np" "$SHARDLAB" train "$name.yaml" > "$name.log" 2> "$name.err"; then
    grep -q "world size $np (mpi), preset $preset" "$name.log" && ok "$name: $np ranks run preset $preset" \
      || bad "$name: no 'world size $np (mpi), preset $preset' line"
    local a b
    a=$(step1_loss "run_$name"); b=$(step1_loss run1)
    if within_rel "$a" "$b" 1e-5; then
      ok "$name: step-1 loss $a = 1 process $b"
    else bad "$name: step-1 loss '$a' vs 1 process '$b'"; fi
  else bad "$name: $(tail -3 "$name.err")"; fi
}
fsdp_run fsdp_sgo2 2 2 zero2 "fsdp: [shard_grad_op, auto_wrap]" "fsdp_config:" "  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer" \
  "  fsdp_backward_prefetch: BACKWARD_PRE" "  fsdp_use_orig_params: false"
fsdp_run fsdp_sgo4 4 1 zero2 "fsdp_version: 2" "fsdp_config:" "  reshard_after_forward: false"
fsdp_run fsdp_ns2 2 2 ddp "fsdp: [no_shard]" "fsdp_config:" "  fsdp_sync_module_states: true"
# The presets that shard parameters: DeepSpeed stage 3 (per-parameter units; "auto" persistence
# 10 x hidden keeps the norms whole), FSDP full_shard and hybrid_shard (2 groups of 2 ranks).
cp "$ROOT/tests/tools/deepspeed/axolotl_zero3.json" zero3.json
fsdp_run ds_zero3 2 2 zero3 "deepspeed: zero3.json"
fsdp_run fsdp_fs2 2 2 zero3 "fsdp: [full_shard, auto_wrap]" "fsdp_config:" "  fsdp_forward_prefetch: true"
fsdp_run fsdp_fs4 4 1 zero3 "fsdp: [full_shard, auto_wrap]"
fsdp_run fsdp_hy4 4 1 fsdp_hybrid_shard "fsdp: [hybrid_shard, auto_wrap]" "fsdp_config:" "  fsdp_hybrid_shard_group_size: 2"
grep -q "shard groups of 2 ranks" fsdp_hy4.log && ok "hybrid: shard groups of 2 ranks" || bad "hybrid: no 'shard groups of 2 ranks'"
# The model a ZeRO-3 run saves is gathered whole: it evaluates as the one-process model does.
printf '{"text": "Once upon a time, a little fox found a red ball."}\n{"text": "The sun was warm and the birds sang."}\n' > eval.jsonl
if [ -s run_fsdp_fs2/model.safetensors ] && "$SHARDLAB" eval --model run_fsdp_fs2 --data eval.jsonl > e3.json 2> e3.err \
   && "$SHARDLAB" eval --model run1 --data eval.jsonl > e1.json 2> e1.err; then
  a=$(grep -o '"mean_loss":[^,}]*' e3.json | cut -d: -f2); b=$(grep -o '"mean_loss":[^,}]*' e1.json | cut -d: -f2)
  if [ -n "$a" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4) }'; then
    ok "zero3's saved model evaluates as one process's ($a vs $b)"
  else bad "zero3's saved model: eval '$a' vs '$b'"; fi
else bad "zero3 eval: $(head -c 300 e3.err)"; fi
write_config hy_bad.yaml "output_dir: run_hy_bad" "micro_batch_size: 2" "fsdp: [hybrid_shard, auto_wrap]" "fsdp_config:" \
  "  hybrid_shard_group_size: 3"
expect_failure "hybrid group size that does not divide the world" \
  "fsdp_config.hybrid_shard_group_size 3 does not divide the world size 2" "${MPIRUN[@]}" "$SHARDLAB" train hy_bad.yaml

# fsdp_cpu_ram_efficient_loading: rank 1 builds the architecture without reading run1's weights and
# gets rank 0's by broadcast; the first loss of fine-tuning run1 is the same as with every rank reading.
for flag in true false; do
  cat > "ft_$flag.yaml" <<YAML
base_model: run1
datasets:
  - path: corpus.jsonl
    type: completion
sequence_len: 64
max_steps: 1
micro_batch_size: 2
output_dir: run_ft_$flag
fsdp: [shard_grad_op, auto_wrap]
fsdp_config:
  fsdp_cpu_ram_efficient_loading: $flag
YAML
  "${MPIRUN[@]}" "$SHARDLAB" train "ft_$flag.yaml" > "ft_$flag.log" 2> "ft_$flag.err" || bad "fine-tune ($flag): $(tail -3 "ft_$flag.err")"
done
a=$(step1_loss run_ft_true); b=$(step1_loss run_ft_false)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "cpu_ram_efficient_loading: same first loss ($a) with rank 0 alone reading" \
  || bad "cpu_ram_efficient_loading: '$a' vs '$b'"

# fsdp_state_dict_type SHARDED_STATE_DICT: one shard file per rank; 4 ranks (micro 1: the same
# global batch) resume the 2-rank checkpoint and reproduce its step 3 (summation order differs).
write_config sharded.yaml "output_dir: run_sh" "micro_batch_size: 2" "save_steps: 2" "fsdp: [shard_grad_op, auto_wrap]" \
  "fsdp_config:" "  fsdp_state_dict_type: SHARDED_STATE_DICT"
write_config sharded4.yaml "output_dir: run_sh4" "micro_batch_size: 1" "fsdp: [shard_grad_op, auto_wrap]" \
  "fsdp_config:" "  fsdp_state_dict_type: SHARDED_STATE_DICT" "resume_from_checkpoint: run_sh/checkpoint-2"
if "${MPIRUN[@]}" "$SHARDLAB" train sharded.yaml > sh.log 2> sh.err \
   && mpirun_np 4 "$SHARDLAB" train sharded4.yaml > sh4.log 2> sh4.err; then
  [ -s run_sh/checkpoint-2/shard-rank-0.safetensors ] && [ -s run_sh/checkpoint-2/shard-rank-1.safetensors ] \
    && ok "SHARDED_STATE_DICT: one shard file per rank" || bad "SHARDED_STATE_DICT: no shard-rank-R files in $(ls run_sh/checkpoint-2)"
  a=$(grep -o '"loss":[^,}]*' run_sh/log.jsonl | sed -n 3p | cut -d: -f2)
  b=$(grep -o '"loss":[^,}]*' run_sh4/log.jsonl | tail -1 | cut -d: -f2)
  if within_rel "$a" "$b" 1e-5; then
    ok "4 ranks resume the 2-rank sharded checkpoint: step 3 $b = $a"
  else bad "sharded resume: step 3 '$b' vs '$a'"; fi
else bad "sharded checkpoint runs: $(tail -3 sh.err sh4.err)"; fi

# 5. shardlab explain plans what runs: per step, as many bucket reduce-scatters as the 2-rank
# zero2 run's ledger counted over its 3 steps (its exact bytes are tested in test_engine_mpi).
write_config plan.yaml "output_dir: run_plan" "micro_batch_size: 2" "deepspeed: zero2.json"
if "$SHARDLAB" explain zero2 --world-size 2 plan.yaml > explain.log 2> explain.err; then
  per_step=$(sed -n '/^collectives per step/,$p' explain.log | awk '$1 == "reduce_scatter" { print $2 }')
  ran=$(sed -n '/^communication ledger/,$p' two.log | awk '$1 == "reduce_scatter" { print $2 }')
  grep -q "^buckets" explain.log && grep -q "model.embed_tokens.weight" explain.log && ok "explain lists buckets and parameters" \
    || bad "explain: no bucket listing"
  [ -n "$per_step" ] && [ "$((per_step * 3))" = "$ran" ] && ok "explain: $per_step reduce-scatter(s) per step x 3 steps = the run's $ran" \
    || bad "explain: $per_step per step vs the run's '$ran' over 3 steps"
else bad "explain: $(head -c 400 explain.err)"; fi
expect_error "explain: unknown preset" "unknown sharding preset 'zero9'" "$SHARDLAB" explain zero9 --world-size 2 plan.yaml
# A plan needs no GPU: an FSDP config with parameter offload on device cuda lists every shard's trip
# to the device and back (their bytes are held equal to a traced step in test_engine_mpi).
write_config offload.yaml "output_dir: run_off" "device: cuda" "bf16: true" "fsdp: [full_shard, auto_wrap, offload]"
if "$SHARDLAB" explain fsdp_full_shard --world-size 4 offload.yaml > explain_off.log 2> explain_off.err; then
  grep -q "copy up to the device" explain_off.log && grep -q "copy down to the host" explain_off.log \
    && grep -q "^offload copies per step" explain_off.log && grep -q "own shard (1/4, bf16) on the host" explain_off.log \
    && ok "explain: parameter offload's copies and host-side shards" || bad "explain: no offload copies in $(tail -3 explain_off.log)"
else bad "explain offload: $(head -c 400 explain_off.err)"; fi

finish mpi_train_test

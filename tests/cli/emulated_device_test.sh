#!/usr/bin/env bash
# `shardlab train` with `device: cuda` end to end on 2 ranks, on the emulated CUDA device (the
# shardlab commands linked with tests/support/emulated_cuda: host memory behind Device::cuda, CPU
# kernels, async copies that land at wait()): FSDP full sharding with parameter offload and ZeRO-3
# with optimizer offload train to the same losses as the CPU run, the ranks share the one GPU so the
# collectives go host-staged (and the header says why), ddp_backend nccl there fails naming the
# reason, and the final model is gathered from device buffers and saved.
# Usage: emulated_device_test.sh path/to/shardlab_emulated
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tiny_corpus 64
base_config() {
  tiny_config 64
  cat <<YAML
sequence_len: 64
micro_batch_size: 2
gradient_accumulation_steps: 2
max_steps: 3
learning_rate: 0.005
lr_scheduler: constant
logging_steps: 1
YAML
}
losses() { grep -o '"loss":[^,}]*' "$1/log.jsonl" | cut -d: -f2 | tr '\n' ' '; }
same_losses() {  # same_losses DIR_A DIR_B: every step's loss within 1e-5 (summation order only)
  local a b i
  read -ra a <<< "$(losses "$1")"; read -ra b <<< "$(losses "$2")"
  [ "${#a[@]}" -eq 3 ] && [ "${#b[@]}" -eq 3 ] || return 1
  for i in 0 1 2; do within_rel "${a[$i]}" "${b[$i]}" 1e-5 || return 1; done
}
cat > zero3_offload.json <<'JSON'
{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": true},
 "stage3_param_persistence_threshold": 0}, "train_micro_batch_size_per_gpu": "auto"}
JSON

write_config cpu.yaml "output_dir: run_cpu" "fsdp: [full_shard, auto_wrap]"
write_config off.yaml "output_dir: run_off" "device: cuda" "fsdp: [full_shard, auto_wrap, offload]"
write_config ds.yaml "output_dir: run_ds" "device: cuda" "deepspeed: zero3_offload.json"
write_config nccl.yaml "output_dir: run_nccl" "device: cuda" "ddp_backend: nccl" "fsdp: [full_shard, auto_wrap]"

if "${MPIRUN[@]}" "$SHARDLAB" train cpu.yaml > cpu.log 2> cpu.err; then ok "2 ranks fsdp full_shard on the CPU"
else bad "cpu run: $(tail -3 cpu.err)"; fi

if "${MPIRUN[@]}" "$SHARDLAB" train off.yaml > off.log 2> off.err; then
  ok "2 ranks fsdp full_shard + offload on cuda (emulated)"
  grep -q "^# collectives: host-staged MPI, not NCCL" off.log && ok "the header says the ranks' collectives are host-staged, and why: $(grep '^# collectives' off.log)" \
    || bad "no '# collectives: host-staged ...' line in off.log"
  grep -q "parameters offloaded to the CPU" off.log && ok "the header says the parameters are offloaded" || bad "no offload in the header"
  same_losses run_off run_cpu && ok "offloaded device losses = CPU losses: $(losses run_off)" \
    || bad "offload losses '$(losses run_off)' vs CPU '$(losses run_cpu)'"
  [ -s run_off/model.safetensors ] && ok "the final model is gathered from device buffers and saved" || bad "no run_off/model.safetensors"
else bad "offload run: $(tail -3 off.err)"; fi

if "${MPIRUN[@]}" "$SHARDLAB" train ds.yaml > ds.log 2> ds.err; then
  ok "2 ranks DeepSpeed ZeRO-3 + offload_optimizer on cuda (emulated)"
  grep -q "optimizer offloaded to the CPU" ds.log && ok "the header says the optimizer is offloaded" || bad "no optimizer offload in the header"
  # DeepSpeed stage 3 fetches per parameter; the arithmetic is the same as FSDP's units.
  same_losses run_ds run_cpu && ok "ZeRO-3 offload losses = CPU losses: $(losses run_ds)" \
    || bad "zero3 offload losses '$(losses run_ds)' vs CPU '$(losses run_cpu)'"
else bad "deepspeed offload run: $(tail -3 ds.err)"; fi

expect_failure "ddp_backend nccl on a shared GPU" "ddp_backend nccl:" "${MPIRUN[@]}" "$SHARDLAB" train nccl.yaml

finish emulated_device_test

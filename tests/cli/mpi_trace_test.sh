#!/usr/bin/env bash
# `trace: true` end to end: `mpirun -np 2 shardlab train` writes one merged trace.json in output_dir
# (checked by trace_check: both ranks, nested tracks, collectives on the communication thread,
# optimizer steps inside steps), tracing changes no loss (the same run with it off logs identical
# losses), an untraced run writes no trace, and one process (ZeRO-2 on the local group) traces its
# collectives on the main thread.
#   tests/cli/mpi_trace_test.sh path/to/shardlab path/to/trace_check
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CHECK=$(realpath "$2")

tiny_corpus 64
# ZeRO-2 everywhere: reduce-scatters and all-gathers on 2 ranks, the local group's on one process.
cp "$ROOT/tests/tools/deepspeed/zero2_no_offload.json" zero2.json
base_config() {  # write_config FILE [extra yaml lines...] writes this, then the lines
  tiny_config 64
  cat <<YAML
sequence_len: 64
micro_batch_size: 2
gradient_accumulation_steps: 2
max_steps: 3
learning_rate: 0.005
lr_scheduler: constant
max_grad_norm: 1.0
logging_steps: 1
deepspeed: zero2.json
YAML
}
losses() { grep -o '"loss":[^,}]*' "$1/log.jsonl" | cut -d: -f2 | tr '\n' ' '; }

write_config on.yaml "output_dir: on" "trace: true"
write_config off.yaml "output_dir: off"
if "${MPIRUN[@]}" "$SHARDLAB" train on.yaml > on.log 2> on.err; then ok "mpirun -np 2 train with trace: true runs"
else bad "traced run: $(tail -5 on.err)"; fi
if "${MPIRUN[@]}" "$SHARDLAB" train off.yaml > off.log 2> off.err; then ok "the same run untraced runs"
else bad "untraced run: $(tail -5 off.err)"; fi

grep -q '^trace: true' on.log && ok "the resolved config shows trace: true" || bad "no 'trace: true' in the resolved config"
[ -s on/trace.json ] && ok "rank 0 wrote trace.json" || bad "on/trace.json missing"
[ ! -e off/trace.json ] && ok "an untraced run writes no trace.json" || bad "off/trace.json exists"
if out=$("$CHECK" on/trace.json 2); then ok "merged 2-rank trace: $(echo "$out" | tr '\n' ';')"
else bad "trace_check (2 ranks): $out"; fi

a=$(losses on)
b=$(losses off)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "tracing changes no loss: $a" || bad "losses differ: traced '$a' vs untraced '$b'"

write_config one.yaml "output_dir: one" "trace: true"
if "$SHARDLAB" train one.yaml > one.log 2> one.err; then ok "single-process traced train runs"
else bad "single-process traced train: $(tail -3 one.err)"; fi
if out=$("$CHECK" one/trace.json 1); then ok "single-process trace: $out"
else bad "trace_check (1 process): $out"; fi

finish mpi_trace_test

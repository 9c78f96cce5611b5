#!/usr/bin/env bash
# `shardlab simulate` end to end (no MPI, under a second): the output format (header, one row per
# preset, the overlap rule), the alpha-beta numbers of a hand-computable cluster and model, and
# bad cluster files failing with one line that names the key or the file.
#   tests/cli/simulate_test.sh path/to/shardlab
# Hand computation (model below: vocab 100, hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads):
#   psi = 2*100*32 + 2*(2*32*32 + 2*32*16 + 3*32*64 + 2*32) + 32 = 24992 -> 99968 bytes in f32;
#   one bucket (--bucket-elements 100000 >= psi), alpha = 10 us, beta = 1 MB/s, 2 ranks:
#     ddp all-reduce        2*1*alpha + 2*1/2 * 99968 / 1e6 = 0.099988 s (one bucket: nothing hides)
#     zero2 reduce-scatter  1*alpha + 1/2 * 99968 / 1e6 = 0.049994 s; parameter all-gather the same
#   FLOPs/token = 6*(2*(2*32*32 + 2*32*16 + 3*32*64) + 100*32) + 3*(2*64*4*8*2) = 154368; 128 tokens per
#   rank -> 19759104 FLOPs at 1 GFLOP/s = 0.019759 s; ddp step = 0.019759 + 0.099988 = 0.119747 s.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# simulate reads no data: corpus.jsonl need not exist.
{ tiny_config 64 "vocab_size: 100"
  cat <<YAML
sequence_len: 64
micro_batch_size: 2
learning_rate: 0.005
YAML
} > model.yaml
cat > hand.yaml <<YAML
name: hand
nodes: 1
gpus_per_node: 2
peak_tflops: 0.001
compute_efficiency: 1.0
intra_node: {latency_us: 10, bandwidth_GBps: 0.001}
YAML

# 1. Format: header lines, the column header, one row per preset, the overlap rule.
if "$SHARDLAB" simulate model.yaml --cluster hand.yaml --presets ddp,zero2 --bucket-elements 100000 --verbose \
    > sim.log 2> sim.err; then ok "simulate runs"
else bad "simulate: $(tail -3 sim.err)"; fi
grep -q "^# shardlab simulate model.yaml on hand: world size 2" sim.log && ok "header names config, cluster, world" \
  || bad "header: $(head -2 sim.log)"
grep -Eq "^preset +step s +compute s +comm s +exposed s +GFLOP/rank +memory GiB$" sim.log && ok "column header" \
  || bad "column header missing: $(sed -n 3p sim.log)"
[ "$(grep -Ec '^(ddp|zero2) ' sim.log)" = 2 ] && ok "one row per preset" || bad "rows: $(cat sim.log)"
grep -q "^# overlap:" sim.log && ok "overlap rule stated" || bad "no overlap rule"

# 2. The alpha-beta numbers by hand (see the header comment); columns: step compute comm exposed.
field() { awk -v p="$1" -v c="$2" '$1 == p { print $c }' sim.log; }
check() {  # name, actual, expected
  if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1 = '$2', expected $3"; fi
}
check "ddp compute s" "$(field ddp 3)" 0.019759
check "ddp comm s" "$(field ddp 4)" 0.099988
check "ddp step s" "$(field ddp 2)" 0.119747
check "zero2 comm s" "$(field zero2 4)" 0.099988
check "zero2 reduce-scatter" "$(awk '/gradient reduce-scatter/ { print $4; exit }' sim.log)" 0.049994
check "zero2 parameter all-gather" "$(awk '/parameter all-gather/ { print $4; exit }' sim.log)" 0.049994

# 3. Bad cluster files: one line naming the key or the file, exit status non-zero.
sed 's/bandwidth_GBps/bandwith_GBps/' hand.yaml > typo.yaml
expect_error "misspelt link key" "unknown key 'intra_node.bandwith_GBps'" "$SHARDLAB" simulate model.yaml --cluster typo.yaml
grep -v peak_tflops hand.yaml > nopeak.yaml
expect_error "missing peak" "missing number 'peak_tflops'" "$SHARDLAB" simulate model.yaml --cluster nopeak.yaml
expect_error "missing file" "cluster file 'absent.yaml' cannot be read" "$SHARDLAB" simulate model.yaml --cluster absent.yaml
expect_error "world size beyond the cluster" "exceeds the 2 devices of hand" \
  "$SHARDLAB" simulate model.yaml --cluster hand.yaml --world-size 4

finish simulate_test

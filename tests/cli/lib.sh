# Shared by the tests/cli end-to-end scripts (sourced, with the script's arguments, shardlab first):
# SHARDLAB, ROOT, a fresh working directory WORK (the current directory, removed on exit),
# mpirun_np and MPIRUN (2 ranks), the ok/bad counters and `finish`, expect_error/expect_failure,
# within_rel, tiny_corpus, tiny_config and write_config.
set -uo pipefail
SHARDLAB=$(realpath "$1")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# mpirun_np N command...: N ranks on this machine (oversubscribed: CI has 2 cores), one OpenMP
# thread each; MPIRUN is the usual 2 ranks.
mpirun_np() { local np=$1; shift; mpirun --oversubscribe --allow-run-as-root -np "$np" -x OMP_NUM_THREADS=1 "$@"; }
MPIRUN=(mpirun_np 2)

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
# finish NAME: the summary line, and the script's exit status (non-zero if any check failed).
finish() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# expect_error NAME "substring" command... : exit non-zero and stderr exactly one line containing
# the substring (a user error is one line naming the culprit). stderr is kept in NAME.err.
expect_error() { failing_run one "$@"; }
# expect_failure NAME "substring" command... : the same without the one-line rule, for mpirun,
# which adds its own lines when a rank exits non-zero.
expect_failure() { failing_run any "$@"; }
failing_run() {
  local lines_rule=$1 name=$2 want=$3; shift 3
  local err="${name//[^A-Za-z0-9_.-]/_}.err"
  "$@" > /dev/null 2> "$err"
  local code=$?
  local lines
  lines=$(wc -l < "$err")
  if [ "$code" -ne 0 ] && { [ "$lines_rule" = any ] || [ "$lines" -eq 1 ]; } && grep -qF -- "$want" "$err"; then
    ok "$name: $(head -c 400 "$err" | grep -F -m1 -- "$want")"
  else bad "$name (exit $code, $lines stderr lines, wanted '$want'): $(head -c 400 "$err")"; fi
}

# within_rel A B TOL: |A - B| <= TOL x max(1, |B|), for losses that only differ in summation order.
within_rel() {
  [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" -v t="$3" \
    'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; if (m < 1) m = 1; exit !(d <= t * m) }'
}

# tiny_corpus N: the first N records of the committed TinyWorld sample, as corpus.jsonl.
tiny_corpus() { head -n "$1" "$ROOT/configs/data/tinyworld.jsonl" > corpus.jsonl; }

# tiny_config POSITIONS [model_config lines...]: YAML on stdout for the 2-layer byte-level model the
# scripts train (hidden 32, 4 heads, 2 kv heads, max_position_embeddings POSITIONS) on corpus.jsonl
# as completion text; each script appends its own schedule.
tiny_config() {
  local positions=$1; shift
  cat <<YAML
model_config:
  hidden_size: 32
  intermediate_size: 64
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  max_position_embeddings: $positions
YAML
  for line in "$@"; do echo "  $line"; done
  printf 'tokenizer: byte\ndatasets:\n  - path: corpus.jsonl\n    type: completion\n'
}

# write_config FILE [yaml lines...]: the script's own base_config (a function printing its YAML),
# then the lines, one per line.
write_config() {
  local f=$1; shift
  { base_config
    for line in "$@"; do echo "$line"; done; } > "$f"
}

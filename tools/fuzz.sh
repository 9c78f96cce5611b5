#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang + ASan/UBSan) in build-fuzz/ and runs each for
# SECONDS (default 15) on a copy of its seed corpus, after replaying the saved reproducers in
# tests/fuzz/crashes/<target>/. Prints one line per target; exits non-zero on any crash, leak,
# timeout, out-of-memory or failed invariant, naming the saved input. Usage: tools/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS=${1:-15}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=$(nproc)
TARGETS=(fuzz_safetensors fuzz_json fuzz_tokenizer_json fuzz_train_config)
start=$SECONDS

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (run tools/setup.sh: it installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi

generator=()
command -v ninja >/dev/null 2>&1 && [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] && generator=(-G Ninja)
cmake -S tests/fuzz -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" >"$BUILD_DIR/build.log" 2>&1 || {
  tail -n 40 "$BUILD_DIR/build.log" >&2
  echo "fuzz.sh: build failed (full log: $BUILD_DIR/build.log)" >&2
  exit 1
}
built=$SECONDS

# Abort on the first UB with a stack; one OpenMP thread (inputs are tiny); leaks are checked.
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export OMP_NUM_THREADS=1
# Scratch dirs of targets that need a path (one that crashed leaves its last one behind).
export SHARDLAB_FUZZ_TMP="$PWD/$BUILD_DIR/tmp"
rm -rf "$SHARDLAB_FUZZ_TMP" && mkdir -p "$SHARDLAB_FUZZ_TMP"
FUZZ_FLAGS=(-timeout=5 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1)

# Why a log ended badly, in a few words.
failure_kind() {
  local log=$1
  local re='ERROR: libFuzzer: [a-z-]+|ERROR: (Address|Leak)Sanitizer: [a-z-]+|runtime error: .{0,60}'
  grep -m1 -oE "$re|FUZZ_ASSERT failed[^:]*" "$log" ||
    echo "exit status $2"
}

# Runs one target: replays tests/fuzz/crashes/<target>/*, then fuzzes a working corpus kept in
# $BUILD_DIR/corpus/<target> (seeds copied in; the committed corpus is never written).
run_target() {
  local t=$1
  local bin="$BUILD_DIR/$t" log="$BUILD_DIR/logs/$t.log" art="$BUILD_DIR/artifacts/$t/"
  local work="$BUILD_DIR/corpus/$t" seeds="tests/fuzz/corpus/$t" crashes="tests/fuzz/crashes/$t"
  mkdir -p "$work" "$art" "$BUILD_DIR/logs"
  cp -f "$seeds"/* "$work"/
  if compgen -G "$crashes/*" >/dev/null; then
    local f rc=0
    for f in "$crashes"/*; do
      "$bin" "${FUZZ_FLAGS[@]}" "$f" >"$log" 2>&1 || rc=$?
      if [[ $rc -ne 0 ]]; then
        echo "$t: FAIL saved reproducer $f still fails ($(failure_kind "$log" $rc)); log: $log"
        return 1
      fi
    done
  fi
  local rc=0
  "$bin" "${FUZZ_FLAGS[@]}" -max_total_time="$SECS" -artifact_prefix="$art" "$work" >"$log" 2>&1 || rc=$?
  local runs cov
  runs=$(grep -m1 -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n1 || true)
  if [[ $rc -ne 0 ]]; then
    local input
    input=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | sed 's/Test unit written to //' || true)
    echo "$t: FAIL $(failure_kind "$log" $rc); input: ${input:-none saved}; log: $log"
    return 1
  fi
  echo "$t: ok, $runs runs in ${SECS}s ($cov)"
}

# Up to $JOBS targets at a time; each writes its line to its own file so output stays whole.
mkdir -p "$BUILD_DIR/logs"
pids=()
for t in "${TARGETS[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait -n || true; done
  run_target "$t" >"$BUILD_DIR/logs/$t.result" &
  pids+=($!)
done
status=0
for i in "${!TARGETS[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "$BUILD_DIR/logs/${TARGETS[$i]}.result"
done

verdict=$([[ $status -eq 0 ]] && echo "no failures" || echo "FAILURES above")
echo "fuzz.sh: build $((built - start)) s, fuzzing $((SECONDS - built)) s, $verdict"
exit $status

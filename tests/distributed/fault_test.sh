#!/usr/bin/env bash
# Fault test: run fault_rank_program under an MPI launcher with one rank hanging or killed and
# check that the job ends non-zero within a wall-clock bound, with output naming the failure.
# Usage: fault_test.sh MODE MAX_SECONDS EXPECTED_REGEX LAUNCHER_AND_PROGRAM...
#   (MODE is appended to the command; MODE none expects success.)
set -uo pipefail
mode=$1 max_seconds=$2 expected=$3
shift 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
timeout $((max_seconds + 30)) "$@" "$mode" >"$log" 2>&1
rc=$?
elapsed=$((SECONDS - start))
echo "--- output (exit $rc after ${elapsed} s) ---"
cat "$log"
echo "---"
if [[ $mode == none ]]; then
  [[ $rc == 0 ]] || { echo "FAIL: a clean run exited $rc"; exit 1; }
else
  [[ $rc != 0 ]] || { echo "FAIL: mode $mode exited 0"; exit 1; }
  [[ $rc != 124 ]] || { echo "FAIL: mode $mode hung (killed by timeout)"; exit 1; }
fi
((elapsed <= max_seconds)) || { echo "FAIL: took ${elapsed} s, bound ${max_seconds} s"; exit 1; }
grep -Eq "$expected" "$log" || { echo "FAIL: output does not match /$expected/"; exit 1; }
echo "PASS: mode $mode ended (exit $rc) in ${elapsed} s with the expected message"

#!/usr/bin/env bash
# Runs on a GPU machine from the repository root with gpu-bundle/ (tools/gpu_bundle.sh) beside
# it: the device's name, every CUDA test, compute-sanitizer memcheck over the op tests, and the
# GPU benchmarks; logs, gtest XML and benchmark JSON go to RESULTS_DIR (default ./gpu-results).
# Usage: bash gpu-bundle/gpu_check.sh [RESULTS_DIR] [SECTIONS]  SECTIONS: any of tests,memcheck,bench
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESULTS=${1:-gpu-results}
SECTIONS=${2:-tests,memcheck,bench}
mkdir -p "$RESULTS"
BUNDLE=$(mktemp -d)/bin
tar xzf "$HERE/shardlab-gpu.tgz" -C "$(dirname "$BUNDLE")"
# The bundle's libraries only fill gaps: the machine's own (newer) ones come first.
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$BUNDLE/lib"
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$RESULTS/device.txt"

if [[ $SECTIONS == *tests* ]]; then
  echo "== CUDA tests"
  "$BUNDLE/test_cuda" --gtest_output="xml:$RESULTS/test_cuda.xml" 2>&1 | tee "$RESULTS/test_cuda.log" | \
    grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|error' | head -150
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if [[ $SECTIONS == *memcheck* ]]; then
  echo "== compute-sanitizer memcheck (op tests; the Llama step, the 8.6 GB fill and the Llama-sized GEMMs excluded for time)"
  compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
    "$BUNDLE/test_cuda" --gtest_filter='-CudaLlama.*:BlockCache.*:CudaFill.Huge*:CudaMatmul.Llama*' >"$RESULTS/memcheck.log" 2>&1
  rc=$?
  grep -E 'ERROR SUMMARY|Invalid|out of bounds|^\[  FAILED' "$RESULTS/memcheck.log" | head -40
  [[ $rc -eq 0 ]] || { echo "memcheck exit $rc"; status=1; }
fi

if [[ $SECTIONS == *bench* ]]; then
  for b in "$BUNDLE"/bench_gpu_*; do
    [[ -e "$b" ]] || continue
    name=$(basename "$b")
    # Training throughput against PyTorch is its own, longer run: tools/gpu_train_bench.sh.
    [[ $name == bench_gpu_train_throughput ]] && continue
    echo "== $name"
    "$b" --out "$RESULTS/${name#bench_gpu_}.json" 2>&1 | tee "$RESULTS/$name.log" | tail -40
    [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  done
fi
echo "gpu_check: exit $status (results in $RESULTS)"
exit $status

#!/usr/bin/env bash
# Installs what is missing, configures (build/, Ninja, Release), builds everything and runs every
# ctest. Extra arguments go to cmake, e.g. tools/test.sh -DSHARDLAB_CUDA=OFF; SHARDLAB_CUDA=OFF in
# the environment does the same. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# mpirun refuses to start as root without these (containers and CI run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

BUILD_DIR=build
JOBS=$(nproc)
start=$SECONDS

tools/setup.sh

cmake_args=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${SHARDLAB_CUDA:-}" ]]; then
  cmake_args+=("-DSHARDLAB_CUDA=${SHARDLAB_CUDA}")
fi
cmake "${cmake_args[@]}" "$@"

cmake --build "$BUILD_DIR" -j "$JOBS"
built=$SECONDS

ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$JOBS"

# Fuzzing (tests/fuzz/, tools/fuzz.sh): a short libFuzzer + ASan/UBSan run of the parsers, about
# 1.5 min from a clean build-fuzz/. SHARDLAB_FUZZ_SECONDS sets seconds per target; 0 skips it.
if [[ "${SHARDLAB_FUZZ_SECONDS:-15}" != 0 ]]; then
  tools/fuzz.sh "${SHARDLAB_FUZZ_SECONDS:-15}"
fi
echo "test.sh: build $((built - start)) s, tests $((SECONDS - built)) s, all passed"

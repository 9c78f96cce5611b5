#!/usr/bin/env bash
# The main job: installs what is missing, builds shardlab, and trains the shipped tiny Llama
# (configs/tiny.yaml, ~5M parameters, byte-level, TinyWorld stories) on the CPU, printing progress,
# the loss curve, the memory ledger and a generated sample. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$(nproc)" --target shardlab
# A fresh output directory each run: train refuses to overwrite a finished one.
rm -rf out/tiny
exec build/tools/shardlab train configs/tiny.yaml

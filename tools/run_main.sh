#!/usr/bin/env bash
# The main job. Until the Llama training job lands it installs what is missing, builds and runs the
# README's autograd example (tools/readme_example.cc). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$(nproc)" --target readme_example
exec build/tools/readme_example

#!/usr/bin/env bash
# Installs the Debian packages shardlab's build and tests need, and only those that are missing.
# Idempotent: when everything is present it prints so and exits 0 without touching apt.
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ python3
  libeigen3-dev libabsl-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  python3-matplotlib  # tools/plot_bench.py and the loss plots (the bench test renders its charts)
  clang libclang-rt-14-dev libomp-14-dev  # libFuzzer builds (clang -fsanitize=fuzzer, OpenMP)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # dpkg-query fails for unknown packages and prints e.g. "deinstall ok config-files" for removed ones.
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#PACKAGES[@]} build packages are installed"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"

#!/usr/bin/env bash
# Builds the GPU test and benchmark programs here (the GPU machine has no Debian dev packages)
# and packs them, with the shared libraries they need beyond glibc and the CUDA toolkit, into
# gpu-bundle/ (git-ignored): shardlab-gpu.tgz (about 17 MB; the programs are 72 MB unpacked, more
# than a device call carries) and tools/gpu_check.sh, which unpacks it on the GPU machine.
# Usage: tools/gpu_bundle.sh [BUILD_DIR]   (default build-gpu/: its own tree, built without
# -march=native, since the GPU machine's CPU may lack this one's instructions)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${1:-build-gpu}
OUT=gpu-bundle

[[ -f "$BUILD_DIR/CMakeCache.txt" ]] ||
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDLAB_NATIVE=OFF -DSHARDLAB_BUILD_TESTS=ON
targets=(test_cuda)
for src in bench/gpu/*.cc; do
  [[ -e "$src" ]] && targets+=("bench_gpu_$(basename "$src" .cc)")
done
cmake --build "$BUILD_DIR" -j "$(nproc)" --target "${targets[@]}"

rm -rf "$OUT" && mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin/lib"
cp "$BUILD_DIR/tests/test_cuda" "$STAGE/bin/"
for t in "${targets[@]:1}"; do cp "$BUILD_DIR/bench/$t" "$STAGE/bin/"; done
# Libraries the GPU machine may lack: everything but glibc's and the CUDA toolkit's own.
for bin in "$STAGE"/bin/test_cuda "$STAGE"/bin/bench_gpu_*; do
  [[ -e "$bin" ]] || continue
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*|libcudart.so*|libcublas*|libnccl*|libcudnn*) ;;
      *) cp -n "$lib" "$STAGE/bin/lib/" ;;
    esac
  done
done
strip --strip-unneeded "$STAGE"/bin/test_cuda "$STAGE"/bin/bench_gpu_* 2>/dev/null || true
tar czf "$OUT/shardlab-gpu.tgz" -C "$STAGE" bin
cp tools/gpu_check.sh "$OUT/"
du -sh "$OUT"
echo "gpu_bundle: $OUT ready; on the GPU machine run: bash $OUT/gpu_check.sh \$OUT"

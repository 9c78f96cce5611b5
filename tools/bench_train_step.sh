#!/usr/bin/env bash
# Training-step tokens/s of configs/tiny.yaml's model on the CPU: shardlab (bench/train_step_bench.cc)
# and the same model and batch in eager PyTorch (tools/bench_train_step.py), same threads and steps;
# prints both and the ratio, and writes bench/results/train_step_cpu.json. Builds nothing.
#
# Usage: tools/bench_train_step.sh [BUILD_DIR]    (default: build; needs BUILD_DIR/bench/bench_train_step)
# Environment: OMP_NUM_THREADS (default: nproc), SHARDLAB_BENCH_STEPS (10), SHARDLAB_BENCH_WARMUP (3),
#   SHARDLAB_BENCH_CONFIG (configs/tiny.yaml), SHARDLAB_BENCH_OUT (the results file),
#   SHARDLAB_BENCH_OPENBLAS_DIR (a folder holding OpenBLAS's libblas.so.3, see below).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
bench="$build/bench/bench_train_step"
[[ -x "$bench" ]] || { echo "bench_train_step: $bench not found; configure $build with -DSHARDLAB_BUILD_BENCH=ON and run ninja -C $build bench_train_step" >&2; exit 1; }

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
export SHARDLAB_BENCH_STEPS="${SHARDLAB_BENCH_STEPS:-10}" SHARDLAB_BENCH_WARMUP="${SHARDLAB_BENCH_WARMUP:-3}"
config="${SHARDLAB_BENCH_CONFIG:-$root/configs/tiny.yaml}"
export SHARDLAB_BENCH_CONFIG="$config"
out="${SHARDLAB_BENCH_OUT:-$root/bench/results/train_step_cpu.json}"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "# threads $OMP_NUM_THREADS, $SHARDLAB_BENCH_WARMUP warm-up + $SHARDLAB_BENCH_STEPS timed steps, load $load_before"
shardlab_out="$("$bench" 2>/dev/null)"
echo "$shardlab_out"
shardlab_json="$(grep '^{"bench"' <<<"$shardlab_out")"

# A python with torch: Debian's python3-torch lives under /usr/bin/python3, a pyenv python3 on
# PATH usually has none.
py=""
for cand in /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c "import torch" 2>/dev/null; then py="$cand"; break; fi
done

torch_json="null"
if [[ -z "$py" ]]; then
  echo "# PyTorch reference skipped: neither /usr/bin/python3 nor python3 can import torch (apt-get install python3-torch)"
else
  # Debian's torch calls the generic libblas.so.3, which is netlib's unoptimised reference BLAS
  # unless OpenBLAS is installed: against that the ratio would say nothing about shardlab. Use
  # OpenBLAS where it is (installed, or unpacked without touching the system:
  #   apt-get download libopenblas0-openmp && dpkg -x libopenblas0-openmp_*.deb DIR
  # then SHARDLAB_BENCH_OPENBLAS_DIR=DIR/usr/lib/x86_64-linux-gnu/openblas-openmp).
  blas_dir="${SHARDLAB_BENCH_OPENBLAS_DIR:-}"
  if [[ -z "$blas_dir" ]]; then
    for d in /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/x86_64-linux-gnu/openblas-pthread; do
      [[ -e "$d/libblas.so.3" ]] && { blas_dir="$d"; break; }
    done
  fi
  ld_path="${LD_LIBRARY_PATH:-}"
  [[ -n "$blas_dir" ]] && ld_path="$blas_dir${ld_path:+:$ld_path}"
  torch_json="$(LD_LIBRARY_PATH="$ld_path" \
    "$py" "$root/tools/bench_train_step.py" --config "$config" --steps "$SHARDLAB_BENCH_STEPS" \
    --warmup "$SHARDLAB_BENCH_WARMUP" | grep '^{"bench"')"
  echo "$torch_json"
fi

SHARDLAB_JSON="$shardlab_json" TORCH_JSON="$torch_json" LOAD_BEFORE="$load_before" OUT="$out" \
  GIT_COMMIT="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" python3 - <<'EOF'
import json, os, platform, time

def cpu_info():
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile"))

sl = json.loads(os.environ["SHARDLAB_JSON"])
pt = json.loads(os.environ["TORCH_JSON"])
model, simd = cpu_info()
result = {
    "bench": "train_step_cpu",
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "git_commit": os.environ["GIT_COMMIT"],
    "machine": {"nproc": os.cpu_count(), "cpu_model": model, "simd": simd, "kernel": platform.release(),
                "load_before": os.environ["LOAD_BEFORE"], "load_after": " ".join(open("/proc/loadavg").read().split()[:3])},
    "threads": sl["threads"],
    "shardlab": sl,
    "pytorch": pt,
    "ratio_shardlab_over_pytorch": round(sl["tokens_per_s"] / pt["tokens_per_s"], 3) if pt else None,
}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
with open(os.environ["OUT"], "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"shardlab: {sl['tokens_per_s']:.0f} tokens/s ({sl['step_ms_median']:.0f} ms/step median of {sl['steps']}, "
      f"{sl['threads']} threads)")
if pt:
    print(f"pytorch {pt['torch']}: {pt['tokens_per_s']:.0f} tokens/s ({pt['step_ms_median']:.0f} ms/step, "
          f"{pt['threads']} threads, attention {pt['attention']}, BLAS {pt['blas']})")
    print(f"ratio shardlab/pytorch: {result['ratio_shardlab_over_pytorch']:.2f}")
    if pt["blas"].startswith("netlib"):
        print("WARNING: PyTorch ran on netlib's reference BLAS (no OpenBLAS found), so this ratio flatters "
              "shardlab; see SHARDLAB_BENCH_OPENBLAS_DIR in tools/bench_train_step.sh")
print(f"load {result['machine']['load_before']} before, {result['machine']['load_after']} after; wrote {os.environ['OUT']}")
EOF

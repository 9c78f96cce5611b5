#!/usr/bin/env bash
# Single-GPU training throughput, shardlab vs PyTorch, on a GPU machine: bench_gpu_train_throughput
# (bench/gpu/train_throughput.cc), then tools/bench_train_gpu.py on the same cases with the batch and
# checkpointing ours ended with; writes one combined JSON (default
# bench/results/train_throughput_<device>.json) and prints ours vs PyTorch: tokens/s, ratio, MFU.
#
# Usage (repository root, on the GPU machine):
#   bash tools/gpu_train_bench.sh [--bin PATH] [--out FILE] [--cases a,b,c] [--steps N] [--warmup N]
#                                 [--layers N] [--seq N] [--micro-batch N] [--peak-tflops X]
# The program: --bin, else build/bench/bench_gpu_train_throughput, else the one inside
# gpu-bundle/shardlab-gpu.tgz (tools/gpu_bundle.sh builds it here; the GPU machine has no compiler deps).
# Bounds: each side runs under `timeout` (SHARDLAB_TRAIN_BENCH_TIMEOUT_SHARDLAB, default 200 s;
# ..._PYTORCH, default 130 s); both rewrite their JSON after every case, so a cut run keeps what finished.
# When $OUT names a directory (the device tool's output folder), every JSON and log is copied there.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin="" out="" cases="a,b,c" steps=6 warmup=2 layers=0 seq=2048 micro_batch=4 peak=0
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { echo "gpu_train_bench: missing value after $1" >&2; exit 2; }
  case "$1" in
    --bin) bin="$2" ;; --out) out="$2" ;; --cases) cases="$2" ;; --steps) steps="$2" ;; --warmup) warmup="$2" ;;
    --layers) layers="$2" ;; --seq) seq="$2" ;; --micro-batch) micro_batch="$2" ;; --peak-tflops) peak="$2" ;;
    *) echo "gpu_train_bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
common=(--cases "$cases" --steps "$steps" --warmup "$warmup" --layers "$layers" --seq "$seq" --micro-batch "$micro_batch"
        --peak-tflops "$peak")
work="$(mktemp -d)"

if [[ -z "$bin" && -x build/bench/bench_gpu_train_throughput ]]; then bin=build/bench/bench_gpu_train_throughput; fi
if [[ -z "$bin" && -f gpu-bundle/shardlab-gpu.tgz ]]; then
  tar xzf gpu-bundle/shardlab-gpu.tgz -C "$work"
  bin="$work/bin/bench_gpu_train_throughput"
  # The bundle's libraries only fill gaps: the machine's own (newer) ones come first.
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$work/bin/lib"
fi
[[ -n "$bin" && -x "$bin" ]] || {
  echo "gpu_train_bench: no bench_gpu_train_throughput (tried --bin, build/bench/, gpu-bundle/shardlab-gpu.tgz)" >&2
  exit 1
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$work/device.txt"
started=$(date +%s)

echo "== shardlab ($bin)"
timeout "${SHARDLAB_TRAIN_BENCH_TIMEOUT_SHARDLAB:-200}" "$bin" "${common[@]}" --out "$work/shardlab.json" 2>&1 |
  tee "$work/shardlab.log"
rc_ours=${PIPESTATUS[0]}
[[ $rc_ours -eq 0 ]] || echo "gpu_train_bench: bench_gpu_train_throughput exited $rc_ours (124: timed out)"

echo "== pytorch"
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c "import torch, transformers" 2>/dev/null; then py="$cand"; break; fi
done
rc_torch=0
if [[ -z "$py" ]]; then
  echo "gpu_train_bench: no python3 with torch and transformers: PyTorch reference skipped"
  rc_torch=1
else
  match=()
  [[ -s "$work/shardlab.json" ]] && match=(--match "$work/shardlab.json")
  PYTHONUNBUFFERED=1 timeout "${SHARDLAB_TRAIN_BENCH_TIMEOUT_PYTORCH:-130}" "$py" tools/bench_train_gpu.py \
    "${common[@]}" "${match[@]}" --out "$work/pytorch.json" 2>&1 | tee "$work/pytorch.log"
  rc_torch=${PIPESTATUS[0]}
  [[ $rc_torch -eq 0 ]] || echo "gpu_train_bench: bench_train_gpu.py exited $rc_torch (124: timed out)"
fi

# Combine with the standard library only (any python3 will do).
combiner=$(command -v python3 || echo /usr/bin/python3)
WORK="$work" OUT_FILE="$out" ELAPSED="$(( $(date +%s) - started ))" RC_OURS="$rc_ours" RC_TORCH="$rc_torch" \
  GIT_COMMIT="${SHARDLAB_GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" "$combiner" - <<'EOF'
import json, os, re, time

work = os.environ["WORK"]
def load(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

ours, torch_doc = load("shardlab.json"), load("pytorch.json")
device = (ours or torch_doc or {}).get("device")
if not device:
    try:
        device = open(os.path.join(work, "device.txt")).read().splitlines()[1].split(",")[0]
    except (OSError, IndexError):
        device = "unknown GPU"
slug = re.sub(r"[^a-z0-9]+", "_", device.split(" (")[0].lower()).strip("_") or "gpu"
out = os.environ["OUT_FILE"] or os.path.join("bench", "results", f"train_throughput_{slug}.json")
by_case = lambda doc: {r["case"]: r for r in (doc or {}).get("cases", [])}
o, t = by_case(ours), by_case(torch_doc)
rows = []
for case in list(o) + [c for c in t if c not in o]:
    a, b = o.get(case, {}), t.get(case, {})
    ok = a.get("status") == "ok" and b.get("status") == "ok"
    row = {"case": case, "method": a.get("method") or b.get("method"), "shape": a.get("shape") or b.get("shape"),
           "batch": a.get("batch"), "seq": a.get("seq"), "gradient_checkpointing": a.get("gradient_checkpointing"),
           "shardlab_status": a.get("status", "missing"), "pytorch_status": b.get("status", "missing"),
           "shardlab_tokens_per_s": a.get("tokens_per_s"), "pytorch_tokens_per_s": b.get("tokens_per_s"),
           "ratio_shardlab_over_pytorch": a["tokens_per_s"] / b["tokens_per_s"] if ok else None,
           "shardlab_mfu": a.get("mfu"), "pytorch_mfu": b.get("mfu"),
           "shardlab_peak_allocated_gib": a.get("peak_allocated_gib"),
           "pytorch_peak_allocated_gib": b.get("peak_allocated_gib"),
           "same_settings": ok and (a["batch"], a["gradient_checkpointing"]) == (b["batch"], b["gradient_checkpointing"])}
    if b.get("status") == "skipped":
        row["pytorch_note"] = b.get("reason")
    rows.append(row)
a_row = next((r for r in rows if r["case"] == "a"), None)
targets = {"ratio_a_at_least": 1.0, "mfu_a_at_least": 0.40}
if a_row and a_row["ratio_shardlab_over_pytorch"] is not None:
    targets["ratio_a_met"] = a_row["ratio_shardlab_over_pytorch"] >= 1.0
if a_row and a_row["shardlab_mfu"] is not None:
    targets["mfu_a_met"] = a_row["shardlab_mfu"] >= 0.40
result = {"bench": "train_throughput_gpu", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "git_commit": os.environ["GIT_COMMIT"], "device": device,
          "peak_tflops": (ours or torch_doc or {}).get("peak_tflops"),
          "peak_source": (ours or torch_doc or {}).get("peak_source"),
          "flops": (ours or torch_doc or {}).get("flops"), "elapsed_s": int(os.environ["ELAPSED"]),
          "exit_codes": {"shardlab": int(os.environ["RC_OURS"]), "pytorch": int(os.environ["RC_TORCH"])},
          "targets": targets, "comparison": rows, "shardlab": ours, "pytorch": torch_doc}
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

pct = lambda v: f"{100 * v:5.1f}%" if isinstance(v, (int, float)) else "    -"
num = lambda v, w=10, p=0: f"{v:{w}.{p}f}" if isinstance(v, (int, float)) else " " * (w - 1) + "-"
print(f"\n# training throughput on {device}, peak {result['peak_tflops']} TFLOP/s ({result['peak_source']})")
print(f"{'case':7s} {'method':6s} {'B':>2s} {'ckpt':>4s} {'shardlab tok/s':>15s} {'pytorch tok/s':>14s} {'ratio':>6s} "
      f"{'MFU ours':>8s} {'MFU torch':>9s} {'GiB ours':>8s} {'GiB torch':>9s}")
for r in rows:
    ratio = r["ratio_shardlab_over_pytorch"]
    note = "" if r["same_settings"] or ratio is None else "  (different batch/checkpointing!)"
    if r["pytorch_status"] != "ok":
        note += f"  pytorch: {r.get('pytorch_note') or r['pytorch_status']}"
    if r["shardlab_status"] != "ok":
        note += f"  shardlab: {r['shardlab_status']}"
    print(f"{r['case']:7s} {str(r['method']):6s} {str(r['batch']):>2s} {('on' if r['gradient_checkpointing'] else 'off'):>4s} "
          f"{num(r['shardlab_tokens_per_s'], 15)} {num(r['pytorch_tokens_per_s'], 14)} "
          f"{(f'{ratio:6.2f}' if ratio is not None else '     -')} {pct(r['shardlab_mfu']):>8s} {pct(r['pytorch_mfu']):>9s} "
          f"{num(r['shardlab_peak_allocated_gib'], 8, 1)} {num(r['pytorch_peak_allocated_gib'], 9, 1)}{note}")
print(f"targets (case a): ratio >= 1.0 -> {targets.get('ratio_a_met', 'n/a')}, MFU >= 40% -> {targets.get('mfu_a_met', 'n/a')}")
print(f"wrote {out} ({result['elapsed_s']} s)")
EOF
rc_combine=$?

if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$work"/*.json "$work"/*.log "$work/device.txt" "$OUT/" 2>/dev/null
  [[ -n "$out" ]] && cp "$out" "$OUT/" 2>/dev/null
  cp bench/results/train_throughput_*.json "$OUT/" 2>/dev/null
fi
rm -rf "$work"
[[ $rc_ours -eq 0 && $rc_torch -eq 0 && $rc_combine -eq 0 ]]

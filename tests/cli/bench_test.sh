#!/usr/bin/env bash
# `mpirun -np 2 shardlab bench` end to end: three presets on a tiny model give a well-formed
# bench.json (every field, every rank, the engine's model state within 5% of the ZeRO paper's
# theory, the first step's loss equal across presets) and bench.csv; a bad preset name fails with
# one clear line before anything is built or written.
#   tests/cli/bench_test.sh path/to/shardlab
# Tolerances: model state within 5% of theory (bucket padding to a multiple of the world size is
# the only difference, well under 1% here). With --warmup 0 the first timed step of every preset
# starts from the same seeded weights on the same rows, so only the order in which per-rank
# token-loss sums are added differs: |a - b| <= 1e-5 x max(1, |b|), as in mpi_train_test.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tiny_corpus 64
{ tiny_config 64
  cat <<YAML
sequence_len: 64
micro_batch_size: 2
learning_rate: 0.005
YAML
} > tiny.yaml

# 1. Two ranks, three presets (replicated, sharded gradients, sharded parameters), two timed steps.
if "${MPIRUN[@]}" "$SHARDLAB" bench tiny.yaml --presets ddp,zero2,zero3 --steps 2 --warmup 0 --out res --trace > run.log 2> run.err; then
  ok "mpirun -np 2 bench ddp,zero2,zero3 runs"
else bad "mpirun -np 2 bench: $(tail -5 run.err)"; fi
grep -q "zero3.*step   2/2 timed" run.log && ok "progress lines name preset and step" || bad "no progress line in: $(head -5 run.log)"
grep -q "^hidden\|hidden: 1 - " run.log && ok "the table defines the hidden fraction" || bad "no definition of hidden in the table"

if python3 - res/bench.json <<'PY'
import json, math, sys
b = json.load(open(sys.argv[1]))
def need(cond, what):
    if not cond:
        sys.exit("bench.json: " + what)
need(b["bench"] == "shardlab bench" and b["world_size"] == 2 and b["timed_steps"] == 2, "header fields")
need("hidden_fraction" in b["definitions"], "definitions.hidden_fraction")
need([p["preset"] for p in b["presets"]] == ["ddp", "zero2", "zero3"], "presets in command-line order")
for p in b["presets"]:
    name = p["preset"]
    need(len(p["step_seconds"]) == 2 and p["median_step_seconds"] > 0, name + ": step times")
    need(p["tokens_per_step"] == 2 * 2 * 64, name + ": global tokens per step (2 rows x 2 ranks x 64)")
    need(abs(p["tokens_per_second"] - p["tokens_per_step"] / p["median_step_seconds"]) < 1e-6 * p["tokens_per_second"], name + ": tokens/s")
    need(len(p["ranks"]) == 2 and [r["rank"] for r in p["ranks"]] == [0, 1], name + ": one row per rank")
    theory = p["model_state_theory_bytes"]["total"]
    for r in p["ranks"]:
        need(max(r["step_seconds"][i] for i in range(2)) <= max(p["step_seconds"]), name + ": slowest rank")
        measured = r["model_state_bytes"]["total"]
        need(abs(measured - theory) <= 0.05 * theory, f"{name} rank {r['rank']}: model state {measured} vs theory {theory}")
        need(set(r["peak_bytes"]) >= {"parameter", "gradient", "optimizer_state", "activation", "total"}, name + ": peak tags")
        need(r["peak_bytes"]["total"] >= r["peak_bytes"]["parameter"] > 0, name + ": peaks")
        h = r["hidden_fraction"]
        need(h is not None and 0 <= h <= 1, f"{name}: hidden fraction {h}")
psi = b["presets"][0]["trained_parameters"]
ddp, zero2, zero3 = b["presets"]
def comm(p, kind):
    return p["ranks"][0]["collectives_per_step"][kind]["payload_bytes"]
# DDP all-reduces the f32 gradients (4 psi bytes, a few scalars aside); ZeRO-2 and ZeRO-3
# reduce-scatter them; ZeRO-3 gathers the parameters for forward and again for backward.
need(abs(comm(ddp, "all_reduce") - 4 * psi) < 0.01 * 4 * psi, "ddp all-reduce bytes")
for p in (zero2, zero3):
    need(abs(comm(p, "reduce_scatter") - 4 * psi) < 0.01 * 4 * psi, p["preset"] + " reduce-scatter bytes")
need(comm(zero3, "all_gather") > 1.2 * comm(zero2, "all_gather"), "zero3 gathers parameters more than once")
theory = [p["model_state_theory_bytes"]["total"] for p in (ddp, zero2, zero3)]
need(theory[0] > theory[1] > theory[2], f"model state theory ddp > zero2 > zero3: {theory}")
for p in (zero2, zero3):
    a, c = ddp["losses"][0], p["losses"][0]
    need(abs(a - c) <= 1e-5 * max(1, abs(c)), f"first-step loss ddp {a} vs {p['preset']} {c}")
PY
then ok "bench.json: fields, ranks, model state within 5% of theory, bytes, equal first loss"
else bad "bench.json check failed"; fi

header=$(head -1 res/bench.csv)
for col in preset rank median_step_seconds tokens_per_second hidden_fraction model_state_bytes model_state_theory_bytes \
           peak_activation_bytes reduce_scatter_wire_bytes_per_step blocked_seconds_per_step; do
  echo "$header" | tr ',' '\n' | grep -qx "$col" || bad "bench.csv lacks column $col"
done
rows=$(tail -n +2 res/bench.csv | wc -l)
fields=$(echo "$header" | tr ',' '\n' | wc -l)
widths=$(awk -F, '{print NF}' res/bench.csv | sort -u)
[ "$rows" = 6 ] && [ "$widths" = "$fields" ] && ok "bench.csv: 6 rows (3 presets x 2 ranks) of $fields fields" \
  || bad "bench.csv: $rows rows, field counts $widths (header $fields)"

# 1b. --trace: one Chrome trace per preset, merged across both ranks, with the collectives in it.
if python3 - res <<'PY'
import json, sys
for preset in ["ddp", "zero2", "zero3"]:
    events = json.load(open(f"{sys.argv[1]}/trace-{preset}.json"))["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    if {e["pid"] for e in spans} != {0, 1}:
        sys.exit(f"trace-{preset}.json: spans of ranks {sorted({e['pid'] for e in spans})}, expected [0, 1]")
    if not any(e.get("cat") == "collective" for e in spans) or not any(e.get("cat") == "optimizer" for e in spans):
        sys.exit(f"trace-{preset}.json: no collective or optimizer spans")
PY
then ok "--trace writes a merged trace per preset (both ranks, collectives, optimizer steps)"
else bad "--trace: traces malformed or missing"; fi

# 2. The charts, where matplotlib is installed (it is optional: plotting is not part of the build).
for py in python3 /usr/bin/python3; do
  if "$py" -c "import matplotlib" 2> /dev/null; then
    if "$py" "$ROOT/tools/plot_bench.py" res/bench.json > plot.log 2>&1 && [ -s res/bench_memory.png ] \
       && [ -s res/bench_step_time.png ] && [ -s res/bench_communication.png ]; then ok "plot_bench.py writes 3 PNGs"
    else bad "plot_bench.py: $(tail -3 plot.log)"; fi
    break
  fi
done

# 3. A bad preset name: one line naming it, nothing written.
if "$SHARDLAB" bench tiny.yaml --presets ddp,zero9 --out bad > bad.log 2> bad.err; then bad "--presets zero9 succeeded"
elif grep -q "zero9" bad.err && [ "$(wc -l < bad.err)" = 1 ] && [ ! -e bad ]; then ok "bad preset: $(cat bad.err)"
else bad "bad preset message: $(cat bad.err)"; fi
expect_error "empty preset list" "presets" "$SHARDLAB" bench tiny.yaml --presets ""
expect_error "stray --hybrid-group-size" "fsdp_hybrid_shard" "$SHARDLAB" bench tiny.yaml --presets ddp --hybrid-group-size 2

finish bench_test

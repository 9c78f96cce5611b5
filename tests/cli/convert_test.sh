#!/usr/bin/env bash
# `shardlab convert` end to end: a 2-rank ZeRO-2 run saves SHARDED_STATE_DICT checkpoints; convert
# turns the last one into config.json + model.safetensors holding exactly the tensors (names,
# shapes, f32 bytes) of the model the run wrote at the end; bf16 output rounds the same tensors; a
# missing or truncated shard, a non-empty --out and a directory that is not a sharded checkpoint fail
# with one line naming the culprit.
#   tests/cli/convert_test.sh path/to/shardlab
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tiny_corpus 32
{ tiny_config 64
  cat <<YAML
sequence_len: 64
micro_batch_size: 2
max_steps: 2
learning_rate: 0.005
lr_scheduler: constant
output_dir: run
fsdp: [shard_grad_op]
fsdp_config:
  fsdp_state_dict_type: SHARDED_STATE_DICT
YAML
} > sharded.yaml
if "${MPIRUN[@]}" "$SHARDLAB" train sharded.yaml > train.log 2> train.err; then
  ok "2-rank sharded run"
else
  bad "2-rank sharded run: $(tail -3 train.err)"
  finish convert_test
  exit 1
fi
CKPT=run/checkpoint-2

# Tensor by tensor: the same names, dtype, shape and bytes (f32), or the bf16 rounding of them.
compare() {  # compare A.safetensors B.safetensors [bf16]
  python3 - "$@" <<'PY'
import json, struct, sys
def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}
a, b = read(sys.argv[1]), read(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit(f"names differ: {sorted(set(a) ^ set(b))}")
for name in a:
    da, sa, ba = a[name]
    db, sb, bb = b[name]
    if sa != sb:
        sys.exit(f"{name}: shape {sa} vs {sb}")
    if len(sys.argv) > 3:  # b is f32, a its bf16 rounding (round to nearest even)
        words = struct.unpack(f"<{len(bb) // 4}I", bb)
        rounded = [((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words]
        if da != "BF16" or struct.pack(f"<{len(rounded)}H", *rounded) != ba:
            sys.exit(f"{name}: not the bf16 rounding of the f32 tensor")
    elif da != db or ba != bb:
        sys.exit(f"{name}: {da} vs {db}, bytes differ")
print(f"{len(a)} tensors equal")
PY
}

if "$SHARDLAB" convert "$CKPT" --out hf > convert.log 2> convert.err; then
  ok "convert runs: $(cat convert.log)"
else bad "convert: $(cat convert.err)"; fi
if out=$(compare hf/model.safetensors run/model.safetensors 2>&1); then ok "converted = the run's final model ($out)"
else bad "converted vs final model: $out"; fi
grep -q '"torch_dtype": "float32"' hf/config.json && ok "config.json says float32" || bad "config.json: $(cat hf/config.json)"
if "$SHARDLAB" convert "$CKPT" --out hf16 --dtype bf16 > /dev/null 2> c16.err \
   && out=$(compare hf16/model.safetensors run/model.safetensors bf16 2>&1); then ok "--dtype bf16 rounds every tensor ($out)"
else bad "bf16 convert: $(cat c16.err) $out"; fi

# Every failure is one line naming the culprit, and writes nothing.
cp -r "$CKPT" missing && rm missing/shard-rank-1.safetensors
expect_error missing_shard "missing/shard-rank-1.safetensors named by missing/index.json is missing" "$SHARDLAB" convert missing --out out1
cp -r "$CKPT" truncated && truncate -s -100 truncated/shard-rank-0.safetensors
expect_error truncated_shard "truncated/shard-rank-0.safetensors" "$SHARDLAB" convert truncated --out out2
[ ! -e out1 ] && [ ! -e out2 ] && ok "failed converts wrote nothing" || bad "a failed convert left output"
expect_error not_sharded "run/index.json is missing" "$SHARDLAB" convert run --out out3
expect_error out_not_empty "--out 'hf' already has files" "$SHARDLAB" convert "$CKPT" --out hf

finish convert_test

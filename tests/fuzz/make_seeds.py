#!/usr/bin/env python3
"""Writes the fuzz seed corpora under tests/fuzz/corpus/<target>/: small valid and near-valid inputs.

Run from anywhere: python3 tests/fuzz/make_seeds.py. Re-running rewrites the same files; the
tokenizer seeds copy tests/data/tokenizers/ fixtures when present.
"""
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data, pad=True):
    """A safetensors file: u64 LE header length, the JSON header (space-padded to 8), the data."""
    h = json.dumps(header, separators=(",", ":")).encode() if not isinstance(header, bytes) else header
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def seeds_safetensors():
    f32 = struct.pack("<4f", 1.0, -2.5, 3.25, 0.0)
    i64 = struct.pack("<2q", 2**53 + 1, -7)
    write("fuzz_safetensors", "two_tensors.safetensors", safetensors(
        {"__metadata__": {"format": "pt"},
         "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
         "ids": {"dtype": "I64", "shape": [2], "data_offsets": [16, 32]}}, f32 + i64))
    write("fuzz_safetensors", "all_dtypes.safetensors", safetensors(
        {"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
         "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
         "c": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]},
         "d": {"dtype": "I32", "shape": [1], "data_offsets": [16, 20]},
         "e": {"dtype": "I8", "shape": [1], "data_offsets": [20, 21]},
         "f": {"dtype": "U8", "shape": [1], "data_offsets": [21, 22]},
         "g": {"dtype": "BOOL", "shape": [2], "data_offsets": [22, 24]}}, bytes(range(24))))
    write("fuzz_safetensors", "scalar_and_empty.safetensors", safetensors(
        {"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
         "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}}, struct.pack("<f", 7.0)))
    write("fuzz_safetensors", "empty_header.safetensors", safetensors({}, b""))
    # Near-valid: truncated data, overlapping offsets.
    write("fuzz_safetensors", "truncated.safetensors", safetensors(
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32[:10]))
    write("fuzz_safetensors", "overlap.safetensors", safetensors(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, bytes(6)))


def seeds_json():
    snippets = {
        "object.json": '{"a": 1, "b": [true, false, null], "c": {"d": "e\\u00e9\\n"}}',
        "numbers.json": '[0, -0, 1.5e300, -2.25E-7, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1e3, 4096.0]',
        "strings.json": '["\\ud83d\\ude00", "\\"\\\\\\/\\b\\f\\n\\r\\t", "caf\u00e9", ""]',
        "nested.json": "[" * 40 + "]" * 40,
        "config.json": json.dumps({"hidden_size": 64, "rope_scaling": {"type": "linear", "factor": 2.0},
                                   "torch_dtype": "bfloat16", "tie_word_embeddings": False}, indent=2),
        "lines.jsonl": '{"text": "one"}\n\n{"text": "two", "n": 2}\n[1,2]\n',
        "trailing_comma.json": '{"a": 1,}',
        "bad_escape.json": '"\\x41"',
    }
    for name, text in snippets.items():
        write("fuzz_json", name, text)


def tokenizer_json(pre_tokenizer, added=(), merges=(), extra_vocab=()):
    byte_map = bytes_to_unicode()
    vocab = {byte_map[b]: b for b in range(256)}
    for tok in extra_vocab:
        vocab[tok] = len(vocab)
    return json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "special": s, "lstrip": False, "rstrip": False,
                          "single_word": False, "normalized": False} for i, c, s in added],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": list(merges), "ignore_merges": False},
    }, ensure_ascii=False, separators=(",", ":"))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def seeds_tokenizer():
    src = ROOT / "tests" / "data" / "tokenizers"
    for name in ("gpt2_tiny", "gpt2_tiny_pairs", "llama3_tiny", "bad_json"):
        tok = src / name / "tokenizer.json"
        if not tok.exists():
            continue
        data = tok.read_bytes()
        cfg = src / name / "tokenizer_config.json"
        if cfg.exists():  # tokenizer_config.json follows a NUL (see fuzz_tokenizer_json.cc)
            data += b"\0" + cfg.read_bytes()
        write("fuzz_tokenizer_json", name + ".json", data)
    # A minimal byte-level BPE without prefix space, so the decode(encode(s)) == s check applies.
    sp = bytes_to_unicode()[32]
    write("fuzz_tokenizer_json", "bytes_no_prefix.json", tokenizer_json(
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        added=[(262, "<|endoftext|>", True)],
        merges=["h e", "he l", "hel l", "hell o", sp + " w"],
        extra_vocab=["he", "hel", "hell", "hello", sp + "w"]))
    llama3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
              "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    write("fuzz_tokenizer_json", "split_seq.json", tokenizer_json(
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
        added=[(258, "<|eot_id|>", True), (259, "<|x|>", False)],
        merges=[["a", "b"], ["ab", "c"]], extra_vocab=["ab", "abc"]) +
        "\0" + json.dumps({"bos_token": "<|eot_id|>", "eos_token": {"content": "<|eot_id|>"}, "add_bos_token": True}))


def seeds_train_config():
    tiny = ROOT / "configs" / "tiny.yaml"
    if tiny.exists():
        write("fuzz_train_config", "tiny.yaml", tiny.read_bytes())
    write("fuzz_train_config", "minimal.yaml",
          "base_model: ./models/llama\ndatasets:\n  - path: data.jsonl\n    type: alpaca\nmax_steps: 10\n")
    write("fuzz_train_config", "full.yaml", """\
model_config:
  vocab_size: 300
  hidden_size: 64
  intermediate_size: 128
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  rms_norm_eps: 1.0e-5
  tie_word_embeddings: true
tokenizer: byte
datasets:
  - path: a.jsonl
    type: completion
    field: body
  - path: b.json
    type:
      format: "[INST] {instruction} {input} [/INST]"
      no_input_format: "[INST] {instruction} [/INST]"
      system_prompt: be brief
val_set_size: 10
sequence_len: 128
sample_packing: true
pad_to_sequence_len: false
train_on_inputs: true
micro_batch_size: 2
gradient_accumulation_steps: 4
num_epochs: 3
optimizer: adamw_torch
learning_rate: 3e-4
adam_beta2: 0.95
lr_scheduler: cosine
warmup_ratio: 0.1
max_grad_norm: 0
seed: 7
output_dir: out
eval_steps: 5
saves_per_epoch: 2
bf16: auto
tf32: false
device: cpu
adapter:
generate_after_training:
  prompt: "Hi"
  max_new_tokens: 8
""")
    write("fuzz_train_config", "bad_key.yaml", "base_model: m\nlearning_rat: 1\ndatasets: []\n")
    write("fuzz_train_config", "anchors.yaml", "base_model: m\ndatasets: [&a {path: d.jsonl, type: completion}, *a]\nmax_steps: 1\n")


if __name__ == "__main__":
    seeds_safetensors()
    seeds_json()
    seeds_tokenizer()
    seeds_train_config()

# Writes the crafted tokenizer fixtures in this directory (run it from here). The merges and extra
# vocabulary entries are chosen by hand; only the 256 byte tokens (id = byte value) are mechanical.
# Expected encodings are derived by hand in tests/models/tokenizer_*_test.cc.
import json, os
def b2u():
    bs = list(range(ord("!"), ord("~")+1))+list(range(0xA1, 0xAC+1))+list(range(0xAE, 0xFF+1))
    cs = bs[:]; n = 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256+n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
B = b2u()
def byte_vocab(): return {B[b]: b for b in range(256)}
def added(id, content, special):
    return {"id": id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}
def bl(prefix, regex): return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": regex}
def write(d, tok, cfg=None):
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/tokenizer.json", "w", encoding="utf-8") as f: json.dump(tok, f, ensure_ascii=False, indent=1); f.write("\n")
    if cfg is not None:
        with open(f"{d}/tokenizer_config.json", "w", encoding="utf-8") as f: json.dump(cfg, f, ensure_ascii=False, indent=1); f.write("\n")

# GPT-2 style: merges as "a b" strings, ids of merged tokens = 256 + rank.
gpt2_merges = ["Ġ t", "h e", "Ġt he", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "' s", "a a", "Ã ©",
               "Ġ 1", "2 3", "Ġ1 23"]
def gpt2(merge_format):
    v = byte_vocab()
    for i, m in enumerate(gpt2_merges): v[m.replace(" ", "")] = 256 + i
    v["<|endoftext|>"] = 271
    merges = gpt2_merges if merge_format == "string" else [m.split(" ") for m in gpt2_merges]
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(271, "<|endoftext|>", True), added(272, "<|end|>", True),
                             added(273, "xyz", False), added(274, "xyzw", False)],
            "normalizer": None, "pre_tokenizer": bl(False, True), "post_processor": bl(True, False),
            "decoder": bl(True, True),
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": v, "merges": merges}}
write("gpt2_tiny", gpt2("string"), {"bos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
                                    "eos_token": {"content": "<|endoftext|>"}, "add_bos_token": False, "tokenizer_class": "GPT2Tokenizer"})
write("gpt2_tiny_pairs", gpt2("pairs"))

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
llama_merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["1", "2"], ["12", "3"], ["'", "s"], ["Ċ", "Ċ"], ["Ã", "©"],
                ["ä", "¸"], ["ä¸", "Ń"], ["Ġ", "Ġ"]]
v = byte_vocab()
for i, (a, b) in enumerate(llama_merges): v[a + b] = 256 + i
v["Ġhello"] = 267  # reachable only through ignore_merges
bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
write("llama3_tiny", {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [added(268, "<|begin_of_text|>", True), added(269, "<|end_of_text|>", True), added(270, "<|eot_id|>", True)],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False}, bl(False, False)]},
    "post_processor": {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing", "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [268], "tokens": ["<|begin_of_text|>"]}}}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
              "fuse_unk": False, "byte_fallback": False, "ignore_merges": True, "vocab": v, "merges": llama_merges}},
    {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"})

# Broken files for load_tokenizer's error paths.
os.makedirs("bad_json", exist_ok=True)
open("bad_json/tokenizer.json", "w").write('{"model": {"type": "BPE", "vocab": {"a": 0,}, "merges": []}}\n')

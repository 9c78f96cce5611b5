#!/usr/bin/env python3
"""Writes the Llama parity goldens under tests/golden/: tiny random Llamas built in plain PyTorch
following Hugging Face's modeling_llama (rotate_half RoPE, llama3 rope scaling, GQA via
repeat_kv, RMSNorm in f32, SwiGLU MLP, shifted mean cross-entropy with ignore_index -100), saved in
HF format with their inputs, logits, loss and every parameter's gradient.

Run with any PyTorch (Debian's python3-torch works: /usr/bin/python3 tools/make_llama_goldens.py).
The C++ tests never need PyTorch: they read the committed outputs.
"""
import json
import math
import os
import struct
import sys

import torch

FORMAT_VERSION = "1"
GOLDEN_MAGIC = "shardlab-llama-golden"


def write_safetensors(path, tensors, metadata):
    """The safetensors format written by hand (8-byte header length, JSON header, raw bytes), so
    the goldens do not depend on the safetensors package or on shardlab's own writer."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def llama3_inv_freq(cfg):
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    factor, low, high, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    wavelen = 2 * math.pi / inv
    out = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen >= high_wl) & (wavelen <= low_wl)
    return torch.where(medium, smoothed, out)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, w, eps):
    var = x.float().pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def forward(cfg, p, ids):
    B, T = ids.shape
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    inv = llama3_inv_freq(cfg)
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    x = p["model.embed_tokens.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)  # repeat_kv
        v = v.repeat_interleave(H // KV, dim=1)
        scores = q @ k.transpose(2, 3) / math.sqrt(D) + mask
        a = torch.softmax(scores.float(), dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, T, H * D)
        x = x + a @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = h @ p[pre + "mlp.gate_proj.weight"].T
        up = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]
    return x @ head.T


def param_shapes(cfg):
    C, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": (V, C)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        shapes.update({
            pre + "self_attn.q_proj.weight": (H * D, C), pre + "self_attn.k_proj.weight": (KV * D, C),
            pre + "self_attn.v_proj.weight": (KV * D, C), pre + "self_attn.o_proj.weight": (C, H * D),
            pre + "mlp.gate_proj.weight": (I, C), pre + "mlp.up_proj.weight": (I, C),
            pre + "mlp.down_proj.weight": (C, I), pre + "input_layernorm.weight": (C,),
            pre + "post_attention_layernorm.weight": (C,),
        })
    shapes["model.norm.weight"] = (C,)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def make_case(out_dir, name, cfg, seed, batch=2, seq=12):
    torch.manual_seed(seed)
    params = {}
    for n, shape in param_shapes(cfg).items():
        if n.endswith("layernorm.weight") or n == "model.norm.weight":
            t = 1.0 + 0.1 * torch.randn(shape)  # not all ones, so the scale's gradient path is exercised
        else:
            t = torch.randn(shape) * cfg["initializer_range"]
        params[n] = t.requires_grad_(True)
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq))
    labels = ids.clone()
    labels[0, :3] = -100  # a masked prompt
    labels[1, 7] = -100
    logits = forward(cfg, params, ids)
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, cfg["vocab_size"]), labels[:, 1:].reshape(-1), ignore_index=-100)
    loss.backward()

    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    config = dict(cfg, architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype="float32", hidden_act="silu")
    with open(os.path.join(case_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    meta = {"magic": GOLDEN_MAGIC, "format_version": FORMAT_VERSION, "torch": torch.__version__, "seed": str(seed)}
    write_safetensors(os.path.join(case_dir, "model.safetensors"), {n: t for n, t in params.items()}, {"format": "pt"})
    expected = {"input_ids": ids, "labels": labels, "logits": logits, "loss": loss.reshape(())}
    expected.update({"grad." + n: t.grad for n, t in params.items()})
    write_safetensors(os.path.join(case_dir, "expected.safetensors"), expected, meta)
    print(f"{name}: loss {loss.item():.6f}, {sum(t.numel() for t in params.values())} parameters")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden")
    base = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0,
                max_position_embeddings=64, initializer_range=0.1, tie_word_embeddings=False, rope_scaling=None)
    make_case(out_dir, "llama_gqa_untied", base, seed=1)
    tied = dict(base, num_key_value_heads=1, intermediate_size=40, tie_word_embeddings=True,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 16})
    make_case(out_dir, "llama_mqa_tied_llama3_rope", tied, seed=2)
    mha = dict(base, num_key_value_heads=4, hidden_size=24, head_dim=6, num_attention_heads=4, rope_theta=500000.0)
    make_case(out_dir, "llama_mha_theta500k", mha, seed=3)


if __name__ == "__main__":
    main()

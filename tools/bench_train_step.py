#!/usr/bin/env python3
"""PyTorch reference for bench/train_step_bench.cc: one training step (forward, loss, backward,
AdamW step, zero_grad) of configs/tiny.yaml's Llama in eager PyTorch on the CPU, timed, printed as
one JSON line with tokens/s. tools/bench_train_step.sh runs both and prints the ratio.

The model follows Hugging Face's modeling_llama as tools/make_llama_goldens.py does (rotate_half
RoPE, GQA via repeat_kv, RMSNorm in f32, SwiGLU MLP, untied head, shifted mean cross-entropy), but
as nn.Module parameters with fused-friendly ops: F.embedding, F.linear, and
F.scaled_dot_product_attention(is_causal=True) where this torch has it (2.0+), else the explicit
masked softmax attention HF's eager path uses.

Usage: python3 tools/bench_train_step.py [--config configs/tiny.yaml] [--steps 10] [--warmup 3]
Threads: torch.set_num_threads(OMP_NUM_THREADS, else the number of cores).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

BYTE_VOCAB = 259  # models/byte_tokenizer.h: 256 bytes + bos, eos, pad


def load_config(path):
    """The YAML's model_config with shardlab's defaults (tools/cli/train_command.cc), plus the batch."""
    with open(path) as f:
        text = f.read()
    try:
        import yaml  # PyYAML: Debian's python3-yaml sits next to python3-torch
        y = yaml.safe_load(text)
    except ImportError:
        y = parse_flat_yaml(text)
    m = y["model_config"]
    cfg = dict(
        vocab_size=m.get("vocab_size", BYTE_VOCAB),
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"],
        num_key_value_heads=m.get("num_key_value_heads", m["num_attention_heads"]),
        rope_theta=float(m.get("rope_theta", 10000.0)),
        rms_norm_eps=float(m.get("rms_norm_eps", 1e-5)),
        tie_word_embeddings=bool(m.get("tie_word_embeddings", False)),
    )
    cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg, int(y.get("micro_batch_size", 1)), int(y.get("sequence_len", 2048)), y


def parse_flat_yaml(text):
    """Enough YAML for the keys read here when PyYAML is absent: `key: scalar` at the top level and
    one level under a `key:` block (model_config); lists and deeper blocks are skipped."""
    def scalar(v):
        v = v.split(" #")[0].strip().strip("'\"")
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(v.lower(), v)

    out, block = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        key, _, value = line.strip().partition(":")
        if not line[0].isspace():
            block = None
            if value.strip():
                out[key] = scalar(value)
            else:
                block = out.setdefault(key, {})
        elif block is not None and value.strip() and len(line) - len(line.lstrip()) <= 2:
            block[key] = scalar(value)
    return out


class RMSNorm(torch.nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    """HF's repeat_kv: (B, KV, T, D) -> (B, KV * n_rep, T, D) through expand + reshape."""
    if n_rep == 1:
        return x
    B, KV, T, D = x.shape
    return x[:, :, None, :, :].expand(B, KV, n_rep, T, D).reshape(B, KV * n_rep, T, D)


HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class Layer(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.H, self.KV, self.D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
        self.q_proj, self.k_proj = lin(C, self.H * self.D), lin(C, self.KV * self.D)
        self.v_proj, self.o_proj = lin(C, self.KV * self.D), lin(self.H * self.D, C)
        self.gate_proj, self.up_proj, self.down_proj = lin(C, I), lin(C, I), lin(I, C)
        self.input_layernorm = RMSNorm(C, cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(C, cfg["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.H, self.D).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(h).view(B, T, self.KV, self.D).transpose(1, 2)  # (B, KV, T, D)
        v = self.v_proj(h).view(B, T, self.KV, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.H // self.KV), repeat_kv(v, self.H // self.KV)
        if HAS_SDPA:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(self.D) + mask
            a = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
        a = a.transpose(1, 2).reshape(B, T, self.H * self.D)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = torch.nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = torch.nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.lm_head = None if cfg["tie_word_embeddings"] else torch.nn.Linear(
            cfg["hidden_size"], cfg["vocab_size"], bias=False)
        for n, p in self.named_parameters():  # HF's init: N(0, 0.02) for linears and embeddings
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        d = cfg["head_dim"]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
        self.inv_freq = inv

    def forward(self, ids):
        B, T = ids.shape
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        mask = None if HAS_SDPA else torch.full((T, T), float("-inf")).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.norm(x)
        return F.linear(x, self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight)


def loaded_blas():
    """Which BLAS this torch called into: Debian's torch links the generic libblas.so.3, which is
    netlib's unoptimised reference BLAS unless OpenBLAS (or another) is installed or preloaded."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown"
    for path in sorted(paths):
        real = os.path.realpath(path)
        if "openblas" in real:
            return "openblas (" + real + ")"
        if "mkl" in real:
            return "mkl (" + real + ")"
    return ("netlib reference (" + ", ".join(sorted(os.path.realpath(p) for p in paths)) + ")") if paths else "none"


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=os.path.join(root, "configs", "tiny.yaml"))
    ap.add_argument("--steps", type=int, default=int(os.environ.get("SHARDLAB_BENCH_STEPS", 10)))
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("SHARDLAB_BENCH_WARMUP", 3)))
    args = ap.parse_args()

    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())
    torch.set_num_threads(threads)
    cfg, B, T, y = load_config(args.config)
    torch.manual_seed(42)
    model = Llama(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(y.get("learning_rate", 1e-3)), betas=(0.9, 0.999),
                            eps=1e-8, weight_decay=float(y.get("weight_decay", 0.0)))
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    V = cfg["vocab_size"]

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # shardlab's zero_grad drops the gradients too
        return loss.item()

    first = 0.0
    for _ in range(args.warmup):
        first = step()
    seconds, last = [], 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        last = step()
        seconds.append(time.perf_counter() - t0)
    med = statistics.median(seconds)
    print(json.dumps({
        "bench": "train_step", "impl": "pytorch", "tokens_per_s": round(B * T / med, 1),
        "step_ms_median": round(med * 1e3, 2), "step_ms_min": round(min(seconds) * 1e3, 2), "steps": args.steps,
        "warmup": args.warmup, "threads": torch.get_num_threads(), "batch": B, "seq": T, "vocab": V,
        "hidden": cfg["hidden_size"], "intermediate": cfg["intermediate_size"], "layers": cfg["num_hidden_layers"],
        "heads": cfg["num_attention_heads"], "kv_heads": cfg["num_key_value_heads"],
        "parameters": sum(p.numel() for p in model.parameters()), "loss_after_warmup": round(first, 4),
        "loss_last": round(last, 4), "torch": torch.__version__,
        "attention": "sdpa" if HAS_SDPA else "explicit_causal_softmax", "blas": loaded_blas(),
        "step_ms": [round(s * 1e3, 3) for s in seconds],
    }), flush=True)


if __name__ == "__main__":
    sys.exit(main())

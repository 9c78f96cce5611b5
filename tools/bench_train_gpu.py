#!/usr/bin/env python3
"""PyTorch reference for bench/gpu/train_throughput.cc: the same Llama shapes, batches and step on one
GPU in eager PyTorch with Hugging Face transformers, timed the same way, one JSON file out.
tools/gpu_train_bench.sh runs both and prints the ratio. No test needs this script.

Cases (as the C++ bench): a = 1.1B Llama full fine-tune (hidden 2048, 16 layers, 32/8 heads,
intermediate 8192, vocab 32000); b = Llama-3-8B shape with LoRA r=16 alpha=32 on q,k,v,o,gate,up,down;
c = the same with QLoRA (bitsandbytes NF4; skipped when bitsandbytes is not importable). A "_ckpt"
suffix turns gradient checkpointing on (use_reentrant=False).

Model: transformers' LlamaForCausalLM, attn_implementation="sdpa", use_cache=False, built on the GPU
from a seed (HF init); loss = HF's own (labels=input_ids: shifted mean cross-entropy in f32).
Precision, the closest match to ours (bf16 weights computing, fp32 masters stepped by AdamW):
  a: fp32 parameters + torch.autocast(bf16) + torch.optim.AdamW (HF Trainer's bf16=True), the
     fp32 parameters playing our masters' part (--precision bf16: bf16 parameters, no masters);
  b, c: frozen bf16 base, PEFT's LoRA weights (fp32 by its autocast_adapter_dtype) under autocast
     bf16 + AdamW on them; a minimal LoRA of our own when peft is missing.
AdamW: lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, torch's default implementation
(foreach on CUDA); zero_grad(set_to_none=True). Timing: torch.cuda.synchronize + perf_counter around
each step, median of the timed steps. FLOPs/MFU: the C++ bench's formulas (see its header).

Usage: python3 tools/bench_train_gpu.py [--cases a,b,c] [--layers N] [--steps 6] [--warmup 2]
         [--seq 2048] [--micro-batch 4] [--match shardlab.json] [--peak-tflops X] [--out FILE]
--match takes the C++ bench's JSON and runs each case with the batch and checkpointing it ended
with (after any out-of-memory retry), so the two sides time the same work.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

# Dense bf16 peaks (no sparsity) by device name, first match wins: bench/gpu/train_throughput.cc's kPeaks.
PEAKS = [("H100 PCIe", 756), ("H100 NVL", 835), ("H200 NVL", 835), ("GH200", 989), ("H200", 989),
         ("H100", 989), ("H800", 989), ("A100", 312), ("L40S", 362)]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def shape(base, seq):
    if base == "a":
        return dict(name="llama-1.1b", vocab_size=32000, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, rope_theta=10000.0,
                    rms_norm_eps=1e-5, max_position_embeddings=max(2048, seq))
    return dict(name="llama-3-8b", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                rms_norm_eps=1e-5, max_position_embeddings=max(8192, seq))


def parse_case(case_id):
    base, ckpt = (case_id[:-5], True) if case_id.endswith("_ckpt") else (case_id, False)
    if base not in ("a", "b", "c"):
        raise SystemExit(f"unknown case '{case_id}' (expected a, b, c, optionally with _ckpt)")
    return base, ckpt


def dense_params(s):
    C, I, L, V = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"], s["vocab_size"]
    d = C // s["num_attention_heads"]
    Hq, Hkv = s["num_attention_heads"], s["num_key_value_heads"]
    proj = L * (2 * C * Hq * d + 2 * C * Hkv * d + 3 * C * I)
    return proj, V * C, V * C + proj + L * 2 * C + C + V * C  # projections, lm_head, all (untied)


def flop_count(s, method, trained, T, ckpt):
    """Per token, as bench/gpu/train_throughput.cc: N = projections + lm_head, A = 2 T Hq d L."""
    proj, head, total = dense_params(s)
    N = proj + head
    d = s["hidden_size"] // s["num_attention_heads"]
    A = 2.0 * T * s["num_attention_heads"] * d * s["num_hidden_layers"]
    lora = 0 if method == "full" else trained
    weights = 6.0 * N if method == "full" else 4.0 * N + 6.0 * lora
    model = weights + 3.0 * A
    hardware = model + ((2.0 * proj + 2.0 * lora + A) if ckpt else 0.0)
    return dict(params_total=total, gemm_params_N=N, projection_params=proj, lm_head_params=head,
                attention_fwd_flops_per_token=A, model_flops_per_token=model, hardware_flops_per_token=hardware,
                model_flops_per_token_palm=weights + 6.0 * A)


def build_llama(torch, s, dtype, dev):
    """HF LlamaForCausalLM with SDPA attention, made directly on `dev` in `dtype` from the seed."""
    from transformers import LlamaConfig, LlamaForCausalLM
    kw = dict(vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
              num_hidden_layers=s["num_hidden_layers"], num_attention_heads=s["num_attention_heads"],
              num_key_value_heads=s["num_key_value_heads"], rms_norm_eps=s["rms_norm_eps"],
              max_position_embeddings=s["max_position_embeddings"], tie_word_embeddings=False, use_cache=False,
              initializer_range=0.02)
    if hasattr(LlamaConfig(), "rope_parameters"):  # transformers 5
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": s["rope_theta"]}
    else:
        kw["rope_theta"] = s["rope_theta"]
    cfg = LlamaConfig(**kw)
    torch.manual_seed(42)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            try:
                model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=dtype)
            except TypeError:  # transformers 4: torch_dtype
                model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", torch_dtype=dtype)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=dev, dtype=dtype)


class MiniLora:
    """LoRA without peft: y = base(x) + (alpha / r) B(A(x)), A kaiming-uniform, B zeros, both fp32."""

    @staticmethod
    def apply(torch, model, r, alpha, dev):
        import math

        class LoraLinear(torch.nn.Module):
            def __init__(self, base):
                super().__init__()
                self.base, self.scale = base, alpha / r
                self.lora_A = torch.nn.Parameter(torch.empty(r, base.in_features, device=dev))
                self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, r, device=dev))
                torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

            def forward(self, x):
                y = self.base(x)
                return y + self.scale * torch.nn.functional.linear(torch.nn.functional.linear(x, self.lora_A),
                                                                   self.lora_B)

        for p in model.parameters():
            p.requires_grad_(False)
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if child_name in LORA_TARGETS and isinstance(child, torch.nn.Linear):
                    setattr(module, child_name, LoraLinear(child))
        return model


def apply_lora(torch, model, r, alpha, dev):
    try:
        import peft
        cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none",
                              task_type="CAUSAL_LM")
        return peft.get_peft_model(model, cfg), f"peft {peft.__version__}"
    except ImportError:
        return MiniLora.apply(torch, model, r, alpha, dev), "builtin (peft not installed)"


def quantize_nf4(torch, model):
    """Every decoder projection -> bitsandbytes Linear4bit (nf4, blocksize 64, double quant, bf16 compute)."""
    import bitsandbytes as bnb
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in LORA_TARGETS and isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False, compute_dtype=torch.bfloat16,
                                      compress_statistics=True, quant_type="nf4", device="cpu")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", blocksize=64)
                setattr(module, child_name, q.to("cuda"))  # Params4bit quantizes on the move
    torch.cuda.empty_cache()
    return model, f"bitsandbytes {bnb.__version__}"


def run_case(torch, case_id, B, ckpt, args, peak):
    base, _ = parse_case(case_id)
    method = {"a": "full", "b": "lora", "c": "qlora"}[base]
    s = shape(base, args.seq)
    if args.layers > 0:
        s["num_hidden_layers"] = args.layers
    T, dev = args.seq, args.device
    cuda = dev == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_setup = time.perf_counter()
    notes = {}
    if method == "full":
        pure_bf16 = args.precision == "bf16"
        model = build_llama(torch, s, torch.bfloat16 if pure_bf16 else torch.float32, dev)
        precision = ("bf16 parameters + AdamW on them (no fp32 masters)" if pure_bf16 else
                     "fp32 parameters + torch.autocast(bf16) (HF Trainer bf16=True)")
    else:
        model = build_llama(torch, s, torch.bfloat16, dev)
        if method == "qlora":
            try:
                model, notes["quantization"] = quantize_nf4(torch, model)
            except ImportError:
                del model
                return {"case": case_id, "status": "skipped", "method": method, "shape": s["name"],
                        "reason": "skipped: bitsandbytes not installed"}
        if ckpt:  # before wrapping, as PEFT's docs do
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model, notes["lora_impl"] = apply_lora(torch, model, args.lora_r, args.lora_alpha, dev)
        precision = ("NF4 frozen base (bitsandbytes), " if method == "qlora" else "bf16 frozen base, ") + \
            "LoRA weights as the LoRA implementation keeps them (PEFT: fp32) + torch.autocast(bf16)"
    if ckpt and method == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    trained = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    g = torch.Generator(device="cpu").manual_seed(1234)
    ids = torch.randint(0, s["vocab_size"], (B, T), generator=g).to(dev)
    use_autocast = not (method == "full" and args.precision == "bf16")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sync()
    setup_s = time.perf_counter() - t_setup

    def step():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=use_autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    first_step_ms, loss_first = 0.0, 0.0
    for i in range(args.warmup):
        t0 = time.perf_counter()
        loss = step()
        sync()
        if i == 0:
            first_step_ms, loss_first = (time.perf_counter() - t0) * 1e3, loss.item()
    ms, loss_last = [], 0.0
    for i in range(args.steps):
        sync()
        t0 = time.perf_counter()
        loss = step()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
        loss_last = loss.item()
        if i == 0 and args.warmup == 0:
            loss_first = loss_last
    med = statistics.median(ms)
    tps = B * T / (med * 1e-3)
    f = flop_count(s, method, trained, T, ckpt)
    row = {"case": case_id, "status": "ok", "method": method, "shape": s["name"],
           "config": {k: v for k, v in s.items() if k != "name"}, "batch": B, "seq": T, "tokens_per_step": B * T,
           "gradient_checkpointing": ckpt, "precision": precision,
           "attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
           "optimizer": "torch.optim.AdamW lr 1e-4 betas (0.9, 0.999) eps 1e-8 weight_decay 0.01 (default impl)",
           "params_trained": trained, **f, "setup_s": setup_s, "first_step_ms": first_step_ms,
           "step_ms_median": med, "step_ms_min": min(ms), "step_ms": ms, "tokens_per_s": tps,
           "model_tflops": f["model_flops_per_token"] * tps * 1e-12, "loss_first": loss_first, "loss_last": loss_last,
           "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
           "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0, **notes}
    if peak:
        row["mfu"] = f["model_flops_per_token"] * tps / (peak * 1e12)
        row["hfu"] = f["hardware_flops_per_token"] * tps / (peak * 1e12)
        row["mfu_palm"] = f["model_flops_per_token_palm"] * tps / (peak * 1e12)
    return row


def run_with_retries(torch, case_id, B, ckpt, args, peak, fixed):
    """Out of memory: half the batch, then checkpointing (unless --match fixed the settings)."""
    attempts = []
    while True:
        try:
            row = run_case(torch, case_id, B, ckpt, args, peak)
            if attempts:
                row["oom_retries"] = attempts
            return row
        except torch.cuda.OutOfMemoryError as e:
            error = f"out of memory: {str(e).splitlines()[0]}"
        except Exception as e:  # noqa: BLE001 - record any failure and go on with the next case
            error = f"{type(e).__name__}: {e}"
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
        attempts.append({"batch": B, "gradient_checkpointing": ckpt, "error": error})
        if error.startswith("out of memory") and not fixed and B > 1:
            B //= 2
        elif error.startswith("out of memory") and not fixed and not ckpt:
            ckpt = True
        else:
            base, _ = parse_case(case_id)
            print(f"# case {case_id} failed: {error}", file=sys.stderr, flush=True)
            return {"case": case_id, "status": "error", "method": {"a": "full", "b": "lora", "c": "qlora"}[base],
                    "batch": B, "gradient_checkpointing": ckpt, "error": error, "attempts": attempts}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--precision", choices=["autocast", "bf16"], default="autocast", help="case a only")
    ap.add_argument("--match", help="the C++ bench's JSON: use its batch and checkpointing per case")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--out", default="")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: smoke-test this script with tiny --layers/--seq (no MFU)")
    args = ap.parse_args()

    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train_gpu: torch sees no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    peak, peak_source = args.peak_tflops, "--peak-tflops"
    if args.device == "cpu":
        peak, peak_source = 0.0, "cpu smoke test: no MFU"
    elif peak <= 0:
        peak, peak_source = 0.0, "unknown device: pass --peak-tflops for MFU"
        for needle, tf in PEAKS:
            if needle in device:
                peak, peak_source = float(tf), f"table: '{needle}' dense bf16"
                break
    matched = {}
    if args.match:
        with open(args.match) as f:
            for row in json.load(f).get("cases", []):
                if row.get("status") == "ok":
                    matched[row["case"]] = (row["batch"], row["gradient_checkpointing"])
    out = args.out or os.path.join("bench", "results", "train_throughput_pytorch_" +
                                   "".join(c if c.isalnum() else "_" for c in device.lower()).strip("_") + ".json")
    try:
        import transformers
        hf_version = transformers.__version__
    except ImportError:
        print("bench_train_gpu: transformers is not installed", file=sys.stderr)
        return 1
    doc = {"bench": "train_throughput_gpu", "impl": "pytorch", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "device": device, "peak_tflops": peak, "peak_source": peak_source, "steps": args.steps,
           "warmup": args.warmup, "seq": args.seq, "torch": torch.__version__, "transformers": hf_version,
           "cuda": torch.version.cuda, "matched_to": args.match,
           "timing": "torch.cuda.synchronize + perf_counter around each step (forward + HF loss, backward, "
                     "AdamW step, zero_grad); median of the timed steps",
           "flops": "as bench/gpu/train_throughput.cc: N = projections + lm_head; A = 2 T Hq d L; full 6N + 3A; "
                    "LoRA/QLoRA 4N + 6 N_lora + 3A; HFU adds 2 N_proj + 2 N_lora + A with checkpointing",
           "cases": []}
    print(f"# pytorch {torch.__version__}, transformers {hf_version} on {device}; peak {peak:.0f} TFLOP/s ({peak_source})",
          flush=True)
    print(f"{'case':7s} {'method':6s} {'B':>3s} {'ckpt':>5s} {'step ms':>9s} {'tokens/s':>11s} {'TFLOP/s':>9s} "
          f"{'MFU':>7s} {'peak GiB':>9s}", flush=True)
    for case_id in [c for c in args.cases.split(",") if c]:
        base, ckpt = parse_case(case_id)
        B = args.micro_batch if base == "a" else 1
        fixed = case_id in matched
        if fixed:
            B, ckpt = matched[case_id]
        row = run_with_retries(torch, case_id, B, ckpt, args, peak, fixed)
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
        if row["status"] == "ok":
            print(f"{case_id:7s} {row['method']:6s} {row['batch']:3d} {'on' if row['gradient_checkpointing'] else 'off':>5s} "
                  f"{row['step_ms_median']:9.1f} {row['tokens_per_s']:11.0f} {row['model_tflops']:9.1f} "
                  f"{100 * row.get('mfu', 0):6.1f}% {row['peak_allocated_gib']:9.1f}", flush=True)
        else:
            print(f"{case_id:7s} {row['method']:6s} {row['status'].upper()}: {row.get('reason') or row.get('error')}",
                  flush=True)
        doc["cases"].append(row)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out + ".tmp", "w") as f:  # rewritten after every case: a cut-short run keeps the finished ones
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(out + ".tmp", out)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the PEFT LoRA golden under tests/golden/peft_lora_gqa/: Hugging Face PEFT's own LoRA on
transformers' LlamaForCausalLM, loaded from the committed tests/golden/llama_gqa_untied base.
Both lora_A and lora_B are random (a freshly initialised B is zero, which would hide the adapter),
so the adapter changes the logits. PEFT's save_pretrained writes adapter_config.json and
adapter_model.safetensors exactly as PEFT does; expected.safetensors holds the inputs, the logits
of base + adapter, the loss and the LoRA gradients, and the merged weights of merge_and_unload.

Needs transformers and peft; Debian's torch 1.13 works with transformers 4.40 and peft 0.10:
  /usr/bin/python3 -m venv --system-site-packages /tmp/peftvenv
  /tmp/peftvenv/bin/pip install transformers==4.40.2 safetensors Jinja2
  /tmp/peftvenv/bin/pip install --no-deps peft==0.10.0 accelerate==0.30.1
  /tmp/peftvenv/bin/python tools/make_peft_golden.py
The C++ tests never need PyTorch: they read the committed outputs.
"""
import json
import os
import sys

import peft
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llama_goldens import write_safetensors  # noqa: E402  (the same hand-written writer)

FORMAT_VERSION = "1"
GOLDEN_MAGIC = "shardlab-peft-golden"
BASE = "llama_gqa_untied"
CASE = "peft_lora_gqa"
# A subset of the projections, so that unwrapped ones (k_proj, up_proj) are covered too.
TARGETS = ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]


def main():
    golden_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden")
    os.chdir(golden_dir)  # so that adapter_config.json names the base by its relative directory
    torch.manual_seed(7)
    base = transformers.LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32, attn_implementation="eager")
    config = peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.1, target_modules=TARGETS, bias="none",
                             task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape) * 0.2)
    model.eval()  # dropout off: the logits are deterministic

    ids = torch.randint(0, base.config.vocab_size, (2, 10))
    labels = ids.clone()
    labels[0, :2] = -100
    logits = model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, base.config.vocab_size), labels[:, 1:].reshape(-1), ignore_index=-100)
    loss.backward()

    case_dir = CASE
    os.makedirs(case_dir, exist_ok=True)
    model.save_pretrained(case_dir)  # adapter_config.json + adapter_model.safetensors, PEFT's names
    os.remove(os.path.join(case_dir, "README.md"))  # PEFT's model card template: nothing the tests read
    expected = {"input_ids": ids, "labels": labels, "logits": logits, "loss": loss.reshape(())}
    for name, p in model.named_parameters():
        if "lora_" in name:
            # PEFT's file name of the tensor: the adapter name ".default" dropped.
            expected["grad." + name.replace(".default", "")] = p.grad
    merged = model.merge_and_unload()
    for name, t in merged.state_dict().items():
        if any(f".{target}." in name for target in TARGETS):
            expected["merged." + name] = t
    meta = {"magic": GOLDEN_MAGIC, "format_version": FORMAT_VERSION, "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "base": BASE}
    write_safetensors(os.path.join(case_dir, "expected.safetensors"), expected, meta)
    with open(os.path.join(case_dir, "adapter_config.json")) as f:
        saved = json.load(f)
    print(f"{CASE}: loss {loss.item():.6f}, r {saved['r']}, alpha {saved['lora_alpha']}, "
          f"targets {sorted(saved['target_modules'])}")


if __name__ == "__main__":
    main()

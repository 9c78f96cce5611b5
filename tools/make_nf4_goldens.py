#!/usr/bin/env python3
"""Writes tests/golden/nf4_bnb.safetensors: an f32 weight quantized by bitsandbytes itself
(quantize_4bit, quant_type nf4, blocksize 64, compress_statistics=True) and what bnb's
dequantize_4bit gives back, for tests/core/nf4_test.cc.

bitsandbytes needs a recent PyTorch, not Debian's 1.13, so run this in a venv:
    python3 -m venv /tmp/nf4-bnb-venv
    /tmp/nf4-bnb-venv/bin/pip install bitsandbytes numpy safetensors   # pulls PyPI's torch
    /tmp/nf4-bnb-venv/bin/python tools/make_nf4_goldens.py
bitsandbytes >= 0.46 runs quantize_4bit / dequantize_4bit on the CPU (its "default" and "cpu"
backends); the committed golden was made with bitsandbytes 0.50.2 and torch 2.15.0 on the CPU.

What the C++ side matches exactly and what it cannot (see tests/core/nf4_test.cc):
  - packed 4-bit codes: bit for bit (bucketize against the code midpoints, odd tail padded with 0.0);
  - dequantized absmax and weights from bnb's quant state: bit for bit (product and offset rounded
    separately, the nested map as torch's vectorised linspace builds it);
  - offset: torch's f32 mean rounds its partial sums (the order depends on the CPU's vector width),
    shardlab rounds the exact mean once: the two may be one ulp apart;
  - absmax codes: bnb's CPU quantize_blockwise finds codes with a BinSearch "Direct2" lookup that is
    not always the nearest entry next to a midpoint; shardlab takes the nearest, as bnb's CUDA kernel
    does, so a code next to a midpoint may be the neighbour of bnb's.

Tensors (names as in bnb's QuantState.as_dict, "weight" being the f32 input):
  weight            f32 (97, 199): 19303 elements = 301 full 64-blocks + a 39-element tail, so
                    302 absmax values and 2 nested (256-value) blocks, the last one partial
  packed            u8 (9652,)   Params4bit data: two codes per byte, first element high nibble
  absmax            u8 (302,)    quant_state.absmax: absmax - offset, 8-bit dynamic codes
  nested_absmax     f32 (2,)     quant_state.state2.absmax
  nested_offset     f32 (1,)     quant_state.offset
  quant_map         f32 (16,)    quant_state.code (the NF4 values)
  nested_quant_map  f32 (256,)   quant_state.state2.code (the signed dynamic map)
  absmax_dequant    f32 (302,)   dequantize_blockwise(absmax, state2) + offset
  dequantized       f32 (97, 199) dequantize_4bit(packed, quant_state)
"""
import os
import sys

import bitsandbytes as bnb
import bitsandbytes.functional as F
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "nf4_bnb.safetensors")


def make_weight():
    g = torch.Generator().manual_seed(20240611)
    w = torch.randn(97, 199, generator=g) * 0.02
    # Rows of different scale and a few outliers, so the 64-block absmax values spread out and the
    # double quantization of them has something to do.
    w *= torch.linspace(0.25, 4.0, 97).unsqueeze(1)
    w[3, 17] = 0.5
    w[50, 100] = -0.75
    return w.contiguous()


def main():
    w = make_weight()
    packed, state = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    assert state.nested and state.blocksize == 64 and state.state2.blocksize == 256
    deq = F.dequantize_4bit(packed, state)
    absmax_dequant = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    tensors = {
        "weight": w,
        "packed": packed.reshape(-1).contiguous(),
        "absmax": state.absmax.contiguous(),
        "nested_absmax": state.state2.absmax.float().contiguous(),
        "nested_offset": state.offset.reshape(1).float().contiguous(),
        "quant_map": state.code.float().contiguous(),
        "nested_quant_map": state.state2.code.float().contiguous(),
        "absmax_dequant": absmax_dequant.float().contiguous(),
        "dequantized": deq.float().contiguous(),
    }
    meta = {"bitsandbytes": bnb.__version__, "torch": torch.__version__, "device": "cpu",
            "quant_type": "nf4", "blocksize": "64", "nested_blocksize": "256"}
    tmp = OUT + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, OUT)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes) with bitsandbytes {bnb.__version__}",
          file=sys.stderr)


if __name__ == "__main__":
    main()

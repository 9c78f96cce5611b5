// NF4 (4-bit NormalFloat) weights for QLoRA, laid out as bitsandbytes' Params4bit + QuantState with
// quant_type "nf4", blocksize 64 and compress_statistics=True (double-quantized absmax constants).
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace shardlab {

namespace ops {

// Elements that share one absmax (bitsandbytes' Linear4bit default blocksize).
inline constexpr int64_t kNf4Block = 64;
// Absmax values that share one f32 nested absmax in the double quantization (bnb's state2 blocksize).
inline constexpr int64_t kNf4AbsmaxBlock = 256;

// The 16 NF4 code values: bitsandbytes/functional.py get_4bit_type("nf4") (Dettmers et al., QLoRA,
// arXiv:2305.14314, appendix E), the quantiles of N(0, 1) normalised to [-1, 1] with an exact zero.
inline constexpr std::array<float, 16> kNf4Code = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};
// The decision thresholds of bitsandbytes' dQuantizeNF4 (csrc/kernels.cu; also _NF4_QUANT_TABLE in
// its CPU backend): the midpoints between neighbouring codes. Code i is the number of thresholds
// that x / absmax is strictly greater than.
inline constexpr std::array<float, 15> kNf4Thresholds = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,  0.2035212516784668f,   0.2920137718319893f,   0.3893125355243683f,
    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
};

// The nearest NF4 code of x (already scaled by 1 / absmax), as bnb picks it: the number of
// thresholds below x (torch.bucketize on the CPU, the dQuantizeNF4 threshold tree on CUDA).
inline uint8_t nf4_encode(float x) {
  uint8_t code = 0;
  for (float t : kNf4Thresholds) code += x > t;
  return code;
}

// The signed 8-bit dynamic map of the double quantization, as bitsandbytes builds it (f32 torch
// ops); within one ulp of dynamic_map(true) (core/ops/optim_8bit.h), see core/cpu/nf4_nested_map.cc.
const std::array<float, 256>& nf4_nested_map();

}  // namespace ops

// A quantized weight. The flat (row-major) elements of `shape` are cut into blocks of 64; element i
// has the 4-bit code packed[i / 2] >> 4 (even i: the HIGH nibble, as bnb packs) or & 0xF (odd i).
// Block b's absmax is ops::nf4_nested_map()[absmax_codes[b]] * nested_absmax[b / 256] + offset
// (bnb's dequantize_blockwise of state2, then "+= offset"); element i is ops::kNf4Code[code] * absmax.
struct Nf4Tensor {
  Tensor packed;         // u8 (ceil(numel / 2),)
  Tensor absmax_codes;   // u8 (ceil(numel / 64),)  bnb's quant_state.absmax
  Tensor nested_absmax;  // f32 (ceil(blocks / 256),)  bnb's quant_state.state2.absmax
  Tensor offset;         // f32 (1,)  mean of the 64-block absmax values, bnb's quant_state.offset
  Shape shape;           // the original weight's shape
  DType dtype = DType::f32;  // and dtype

  int64_t numel() const { return shape_numel(shape); }
  int64_t num_blocks() const { return (numel() + ops::kNf4Block - 1) / ops::kNf4Block; }
  // Bytes of all four tensors: 0.5 + 1/64 + 4/(64*256) bytes per element, plus 4 for the offset.
  int64_t nbytes() const;
};

namespace ops {

// The data type lives in namespace shardlab (like Tensor), so that argument-dependent lookup on it
// finds the differentiable nf4_linear (autograd/nf4.h) rather than this raw one.
using shardlab::Nf4Tensor;

// Quantizes a float tensor (f32/bf16/f16/f64, any layout) as bnb's quantize_4bit(nf4, blocksize=64,
// compress_statistics=True): absmax per 64-block in f32, codes of x * (1 / absmax), then the absmax
// values minus their mean quantized with nf4_nested_map() in blocks of 256. The four tensors
// are allocated under the current MemTagScope (a module registers them as parameter bytes).
Nf4Tensor nf4_quantize(const Tensor& w);
// The f32 absmax of every 64-block, decoded from the double quantization.
Tensor nf4_absmax(const Nf4Tensor& q);
// The dequantized weight with q.shape, as `out` (f32/bf16/f16/f64): f32 code * f32 absmax rounded
// once to `out`, as bnb's CUDA kDequantizeBlockwise does.
Tensor nf4_dequantize(const Nf4Tensor& q, DType out);
// Throws unless q's tensors have the dtypes and sizes that q.shape implies (names `op` and the shape).
void check_nf4(const char* op, const Nf4Tensor& q);

// y (..., N) = x (..., K) @ dequant(w)^T for a 2-D weight (N, K) (a Linear weight, out x in).
// Rows of w are dequantized a tile at a time into a small workspace (tagged `workspace`) and
// multiplied there, so the full dequantized weight never exists. x is f32/bf16/f16/f64; the tile is
// rounded to x's dtype first, so the result equals matmul(x, dequantize(w, x.dtype())^T) up to the
// GEMM's summation order.
Tensor nf4_linear(const Tensor& x, const Nf4Tensor& w);
// dx (..., K) = dy (..., N) @ dequant(w): the gradient of nf4_linear with respect to x.
Tensor nf4_linear_backward_input(const Tensor& dy, const Nf4Tensor& w);

}  // namespace ops
}  // namespace shardlab

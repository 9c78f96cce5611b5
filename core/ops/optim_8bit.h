// 8-bit AdamW (bitsandbytes' blockwise Adam8bit): m and v live as u8 codes into a 256-entry
// dynamic map with one f32 absmax per block of 256 elements; the update itself runs in f32.
#pragma once

#include <array>
#include <cstdint>

#include "core/ops/optim.h"
#include "core/tensor.h"

namespace shardlab::ops {

// Elements per quantization block: bitsandbytes' blockwise optimizers allocate
// ceil(numel / 256) absmax values per state (Optimizer8bit.init_state).
inline constexpr int64_t kQuantBlock8bit = 256;
inline int64_t num_blocks_8bit(int64_t numel) { return (numel + kQuantBlock8bit - 1) / kQuantBlock8bit; }

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), sorted ascending.
// For exponent e = 0..6 the code holds the midpoints of linspace(0.1, 1, k+1) scaled by 10^(e-6),
// with k = 2^e (signed, both signs) or k = 2^(e+1) (unsigned), plus 0 and 1.0: 254 + 2 = 256 values.
// The signed map (used for m) spans [-0.99296875, 1]; the unsigned one (for v) spans [0, 1].
// Built in f64 and rounded to f32 (bitsandbytes builds it in f32 torch ops; the two agree to f32 rounding).
const std::array<float, 256>& dynamic_map(bool is_signed);
// The index of the code value nearest to x (x already divided by its block's absmax).
uint8_t quantize_nearest(const std::array<float, 256>& map, float x);

// Blockwise quantization of a contiguous f32 tensor: absmax[b] = max |x| over block b, codes[i] =
// nearest map entry to x[i] / absmax[b] (an all-zero block stores absmax 0 and the code of 0).
// codes: u8 with x's numel; absmax: f32 with num_blocks_8bit(numel) elements.
void quantize_blockwise(const Tensor& x, const Tensor& codes, const Tensor& absmax, bool is_signed);
// out[i] = map[codes[i]] * absmax[i / 256]; out is contiguous f32.
void dequantize_blockwise(const Tensor& codes, const Tensor& absmax, const Tensor& out, bool is_signed);

// One AdamW step with 8-bit state. Per block: m = signed_map[m_codes] * absmax_m, v likewise with
// the unsigned map; the f32 update is exactly adamw_step's (decoupled decay, bias correction, the
// new unquantized m and v move the parameter); then m and v are re-quantized with their new absmax
// (nearest code). param f32/bf16/f16/f64 (math in f32, f64 for f64), grad has param's dtype; m_codes
// and v_codes u8 with param's numel; absmax_m/absmax_v f32 with num_blocks_8bit(numel). All contiguous.
void adamw_8bit_step(const Tensor& param, const Tensor& grad, const Tensor& m_codes, const Tensor& v_codes,
                     const Tensor& absmax_m, const Tensor& absmax_v, const AdamWHyper& h);

}  // namespace shardlab::ops

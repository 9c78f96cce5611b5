// CPU NF4 quantization as bitsandbytes does it (quantize_4bit with compress_statistics=True):
// 64-element absmax blocks, nearest-code packing, double quantization of the absmax values with the
// signed 8-bit dynamic map, and the matching dequantization.
#include <algorithm>
#include <cmath>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/nf4.h"
#include "core/ops/optim_8bit.h"  // quantize_nearest
#include "core/ops/views.h"
#include "core/trace.h"

namespace shardlab {
namespace ops {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_part(const char* op, const Nf4Tensor& q, const Tensor& t, const char* what, DType dtype, int64_t numel) {
  SL_CHECK(t.defined(), op, ": NF4 weight of shape ", shape_str(q.shape), " has no ", what, " tensor");
  SL_CHECK(t.dtype() == dtype && t.numel() == numel && t.is_contiguous(), op, ": NF4 weight of shape ",
           shape_str(q.shape), " needs a contiguous ", dtype_name(dtype), " ", what, " of ", numel,
           " elements, got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  SL_CHECK(t.device().is_cpu(), op, ": the ", what, " of the NF4 weight of shape ", shape_str(q.shape), " is on ",
           t.device().str(), " but this op has only a CPU kernel in this build");
}

// The 64-block absmax values of a contiguous tensor, then their packed codes.
template <typename T>
void quantize_4bit(const T* x, int64_t n, float* absmax, uint8_t* packed) {
  const int64_t blocks = ceil_div(n, kNf4Block);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kNf4Block, end = std::min(n, begin + kNf4Block);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(static_cast<float>(x[i])));
    absmax[b] = amax;
    // bnb multiplies by the reciprocal of the absmax clamped to 1e-38 (its CPU quantize_4bit), so an
    // all-zero block stores absmax 0 and the code of 0.0, and dequantizes to exact zeros.
    const float inv = 1.0f / std::max(amax, 1e-38f);
    // Blocks hold an even number of elements, so a byte never straddles two blocks.
    for (int64_t i = begin; i < end; i += 2) {
      const uint8_t hi = nf4_encode(static_cast<float>(x[i]) * inv);
      // bnb pads an odd tail with 0.0 before coding it: the pad nibble is the code of zero (7).
      const uint8_t lo = nf4_encode(i + 1 < end ? static_cast<float>(x[i + 1]) * inv : 0.0f);
      packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
}

// bnb's double quantization: offset = mean(absmax); the centred values are quantize_blockwise'd with
// the signed dynamic map in blocks of 256 (nearest code of value * (1 / block absmax)). torch's f32
// mean sums in an order that depends on the CPU's vector width; the f64 sum here is the exact mean
// rounded once, and agrees with torch's to an ulp.
void quantize_absmax(const float* absmax, int64_t blocks, uint8_t* codes, float* nested, float* offset) {
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b) sum += absmax[b];
  const float mean = static_cast<float>(sum / static_cast<double>(blocks));
  *offset = mean;
  const auto& map = nf4_nested_map();
  for (int64_t c = 0; c < ceil_div(blocks, kNf4AbsmaxBlock); ++c) {
    const int64_t begin = c * kNf4AbsmaxBlock, end = std::min(blocks, begin + kNf4AbsmaxBlock);
    float amax = 0.0f;
    for (int64_t b = begin; b < end; ++b) amax = std::max(amax, std::fabs(absmax[b] - mean));
    nested[c] = amax;
    const float inv = amax > 0.0f ? 1.0f / amax : 0.0f;  // all equal: every centred value is 0
    for (int64_t b = begin; b < end; ++b) codes[b] = quantize_nearest(map, (absmax[b] - mean) * inv);
  }
}

// One block's absmax from its double quantization, rounded twice as bnb does (the product, then the
// sum: two torch ops). GCC fuses a * b + c into one FMA under -march=native even across statements,
// which rounds once and lands up to a few ulps away after the cancellation against the offset; the
// barrier stops that. Clang fuses only within one expression, so the separate statement suffices.
inline float decode_absmax(float map_value, float nested, float offset) {
  const float scaled = map_value * nested;
#if defined(__GNUC__) && !defined(__clang__)
  return __builtin_assoc_barrier(scaled) + offset;
#else
  return scaled + offset;
#endif
}

}  // namespace

void check_nf4(const char* op, const Nf4Tensor& q) {
  const int64_t n = q.numel();
  SL_CHECK(n > 0, op, ": NF4 weight has an empty shape ", shape_str(q.shape));
  SL_CHECK(is_floating(q.dtype), op, ": NF4 weight of shape ", shape_str(q.shape), " records original dtype ",
           dtype_name(q.dtype), "; expected a floating dtype");
  const int64_t blocks = q.num_blocks();
  check_part(op, q, q.packed, "packed codes", DType::u8, ceil_div(n, 2));
  check_part(op, q, q.absmax_codes, "absmax codes", DType::u8, blocks);
  check_part(op, q, q.nested_absmax, "nested absmax", DType::f32, ceil_div(blocks, kNf4AbsmaxBlock));
  check_part(op, q, q.offset, "offset", DType::f32, 1);
}

Nf4Tensor nf4_quantize(const Tensor& w) {
  SL_FORWARD_TO_DEVICE(nf4_quantize, w.device(), w);
  const char* op = "nf4_quantize";
  check_cpu(op, {w});
  SL_CHECK(is_floating(w.dtype()), op, ": expected a floating weight, got ", dtype_name(w.dtype()), " of shape ",
           shape_str(w.shape()));
  const int64_t n = w.numel();
  SL_CHECK(n > 0, op, ": cannot quantize an empty tensor of shape ", shape_str(w.shape()));
  const int64_t blocks = ceil_div(n, kNf4Block);
  Nf4Tensor q;
  q.shape = w.shape();
  q.dtype = w.dtype();
  q.packed = Tensor::empty({ceil_div(n, 2)}, DType::u8);
  q.absmax_codes = Tensor::empty({blocks}, DType::u8);
  q.nested_absmax = Tensor::empty({ceil_div(blocks, kNf4AbsmaxBlock)}, DType::f32);
  q.offset = Tensor::empty({1}, DType::f32);
  Tensor absmax;
  {
    MemTagScope scratch(MemTag::workspace);
    absmax = Tensor::empty({blocks}, DType::f32);
  }
  const Tensor x = contiguous(w);  // a copy only for strided views
  dispatch_float(w.dtype(), op, [&]<typename T>() {
    quantize_4bit(x.data<T>(), n, absmax.data<float>(), q.packed.data<uint8_t>());
  });
  quantize_absmax(absmax.data<float>(), blocks, q.absmax_codes.data<uint8_t>(), q.nested_absmax.data<float>(),
                  q.offset.data<float>());
  return q;
}

Tensor nf4_absmax(const Nf4Tensor& q) {
  SL_FORWARD_TO_DEVICE(nf4_absmax, q.packed.device(), q);
  check_nf4("nf4_absmax", q);
  const int64_t blocks = q.num_blocks();
  Tensor out = Tensor::empty({blocks}, DType::f32);
  const auto& map = nf4_nested_map();
  const uint8_t* codes = q.absmax_codes.data<uint8_t>();
  const float* nested = q.nested_absmax.data<float>();
  const float offset = q.offset.data<float>()[0];
  float* o = out.data<float>();
  // In bnb's order: dequantize_blockwise(absmax, state2), then absmax += offset.
  for (int64_t b = 0; b < blocks; ++b) o[b] = decode_absmax(map[codes[b]], nested[b / kNf4AbsmaxBlock], offset);
  return out;
}

Tensor nf4_dequantize(const Nf4Tensor& q, DType out_dtype) {
  SL_FORWARD_TO_DEVICE(nf4_dequantize, q.packed.device(), q, out_dtype);
  SL_TRACE_SCOPE("nf4_dequantize", op);
  const char* op = "nf4_dequantize";
  check_nf4(op, q);
  Tensor absmax;
  {
    MemTagScope scratch(MemTag::workspace);
    absmax = nf4_absmax(q);
  }
  Tensor out = Tensor::empty(q.shape, out_dtype);
  const int64_t n = q.numel();
  const uint8_t* packed = q.packed.data<uint8_t>();
  const float* am = absmax.data<float>();
  dispatch_float(out_dtype, op, [&]<typename T>() {
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t byte = packed[i / 2];
      const uint8_t code = i % 2 == 0 ? byte >> 4 : byte & 0xF;
      o[i] = static_cast<T>(kNf4Code[code] * am[i / kNf4Block]);
    }
  });
  return out;
}

}  // namespace ops

int64_t Nf4Tensor::nbytes() const { return packed.nbytes() + absmax_codes.nbytes() + nested_absmax.nbytes() + offset.nbytes(); }

}  // namespace shardlab

// CPU kernels for 8-bit AdamW: bitsandbytes' dynamic map, blockwise (absmax) quantization and the
// fused step that dequantizes a block of m and v, updates in f32 and re-quantizes it.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/optim_8bit.h"
#include "core/trace.h"

namespace shardlab::ops {

namespace {
std::array<float, 256> build_dynamic_map(bool is_signed) {
  // create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): non_sign_bits = 7, so there are
  // no "additional items"; exponent e contributes 2^e (signed, mirrored) or 2^(e+1) fractions.
  std::vector<double> data;
  for (int e = 0; e < 7; ++e) {
    const int items = is_signed ? (1 << e) : (1 << (e + 1));  // fraction_items - 1
    const double scale = std::pow(10.0, e - 6);
    for (int j = 0; j < items; ++j) {
      // midpoint of boundaries j and j+1 of linspace(0.1, 1, items + 1)
      const double lo = 0.1 + 0.9 * j / items, hi = 0.1 + 0.9 * (j + 1) / items;
      const double mean = 0.5 * (lo + hi);
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0);
  data.push_back(1.0);
  SL_CHECK(data.size() == 256, "dynamic_map: built ", data.size(), " values instead of 256");
  std::sort(data.begin(), data.end());
  std::array<float, 256> out{};
  for (int i = 0; i < 256; ++i) out[i] = static_cast<float>(data[i]);
  return out;
}

void check_contig(const char* op, const Tensor& t, const char* what, DType dtype, int64_t numel) {
  SL_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
  SL_CHECK(t.dtype() == dtype, op, ": ", what, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype()),
           " (shape ", shape_str(t.shape()), ")");
  SL_CHECK(t.numel() == numel, op, ": ", what, " has shape ", shape_str(t.shape()), " (", t.numel(),
           " elements) but ", numel, " are needed");
}

// The code of x / absmax; an all-zero block (absmax 0) stores exact zeros.
inline uint8_t encode(const std::array<float, 256>& map, float x, float absmax) {
  return quantize_nearest(map, absmax > 0.0f ? x / absmax : 0.0f);
}
}  // namespace

const std::array<float, 256>& dynamic_map(bool is_signed) {
  static const std::array<float, 256> signed_map = build_dynamic_map(true);
  static const std::array<float, 256> unsigned_map = build_dynamic_map(false);
  return is_signed ? signed_map : unsigned_map;
}

uint8_t quantize_nearest(const std::array<float, 256>& map, float x) {
  // First entry > x, then pick the closer of it and its predecessor (ties go to the smaller index).
  const auto it = std::upper_bound(map.begin(), map.end(), x);
  if (it == map.begin()) return 0;
  if (it == map.end()) return 255;
  const int hi = static_cast<int>(it - map.begin()), lo = hi - 1;
  return static_cast<uint8_t>(x - map[lo] <= map[hi] - x ? lo : hi);
}

void quantize_blockwise(const Tensor& x, const Tensor& codes, const Tensor& absmax, bool is_signed) {
  SL_FORWARD_TO_DEVICE(quantize_blockwise, x.device(), x, codes, absmax, is_signed);
  const char* op = "quantize_blockwise";
  check_cpu(op, {x, codes, absmax});
  const int64_t n = x.numel(), nb = num_blocks_8bit(n);
  check_contig(op, x, "input", DType::f32, n);
  check_contig(op, codes, "codes", DType::u8, n);
  check_contig(op, absmax, "absmax", DType::f32, nb);
  codes.bump_version();
  absmax.bump_version();
  const auto& map = dynamic_map(is_signed);
  const float* xp = x.data<float>();
  uint8_t* cp = codes.data<uint8_t>();
  float* ap = absmax.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t begin = b * kQuantBlock8bit, end = std::min(n, begin + kQuantBlock8bit);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(xp[i]));
    ap[b] = amax;
    for (int64_t i = begin; i < end; ++i) cp[i] = encode(map, xp[i], amax);
  }
}

void dequantize_blockwise(const Tensor& codes, const Tensor& absmax, const Tensor& out, bool is_signed) {
  SL_FORWARD_TO_DEVICE(dequantize_blockwise, codes.device(), codes, absmax, out, is_signed);
  const char* op = "dequantize_blockwise";
  check_cpu(op, {codes, absmax, out});
  const int64_t n = codes.numel(), nb = num_blocks_8bit(n);
  check_contig(op, codes, "codes", DType::u8, n);
  check_contig(op, absmax, "absmax", DType::f32, nb);
  check_contig(op, out, "output", DType::f32, n);
  out.bump_version();
  const auto& map = dynamic_map(is_signed);
  const uint8_t* cp = codes.data<uint8_t>();
  const float* ap = absmax.data<float>();
  float* op_ = out.data<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) op_[i] = map[cp[i]] * ap[i / kQuantBlock8bit];
}

void adamw_8bit_step(const Tensor& param, const Tensor& grad, const Tensor& m_codes, const Tensor& v_codes,
                     const Tensor& absmax_m, const Tensor& absmax_v, const AdamWHyper& h) {
  SL_FORWARD_TO_DEVICE(adamw_8bit_step, param.device(), param, grad, m_codes, v_codes, absmax_m, absmax_v, h);
  SL_TRACE_OP("adamw_8bit_step", param);
  const char* op = "adamw_8bit_step";
  check_cpu(op, {param, grad, m_codes, v_codes, absmax_m, absmax_v});
  check_same_dtype(op, param, grad);
  check_float(op, param);
  const int64_t n = param.numel(), nb = num_blocks_8bit(n);
  SL_CHECK(param.is_contiguous(), op, ": parameter must be contiguous (shape ", shape_str(param.shape()), ")");
  SL_CHECK(grad.is_contiguous() && grad.numel() == n, op, ": gradient ", shape_str(grad.shape()),
           " must be contiguous with the parameter's size ", shape_str(param.shape()));
  check_contig(op, m_codes, "m codes", DType::u8, n);
  check_contig(op, v_codes, "v codes", DType::u8, n);
  check_contig(op, absmax_m, "m absmax", DType::f32, nb);
  check_contig(op, absmax_v, "v absmax", DType::f32, nb);
  SL_CHECK(h.step >= 1, op, ": step must be >= 1, got ", h.step);
  for (const Tensor* t : {&param, &m_codes, &v_codes, &absmax_m, &absmax_v}) t->bump_version();
  const auto& smap = dynamic_map(true);
  const auto& umap = dynamic_map(false);
  dispatch_float(param.dtype(), op, [&]<typename T>() {
    using S = acc_t<T>;  // math type, as in adamw_step
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    uint8_t* mc = m_codes.data<uint8_t>();
    uint8_t* vc = v_codes.data<uint8_t>();
    float* am = absmax_m.data<float>();
    float* av = absmax_v.data<float>();
    const S b1 = static_cast<S>(h.beta1), b2 = static_cast<S>(h.beta2);
    const S decay = static_cast<S>(1.0 - h.lr * h.weight_decay);
    const S step_size = static_cast<S>(h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(h.step))));
    const S inv_bc2_sqrt = static_cast<S>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step))));
    const S eps = static_cast<S>(h.eps);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t begin = b * kQuantBlock8bit, len = std::min(n - begin, kQuantBlock8bit);
      float mnew[kQuantBlock8bit], vnew[kQuantBlock8bit];  // the block's updated, unquantized state
      const float am_old = am[b], av_old = av[b];
      float am_new = 0.0f, av_new = 0.0f;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t i = begin + j;
        const S gi = static_cast<S>(g[i]);
        S pi = static_cast<S>(p[i]) * decay;
        const S mi = b1 * static_cast<S>(smap[mc[i]] * am_old) + (1 - b1) * gi;
        const S vi = b2 * static_cast<S>(umap[vc[i]] * av_old) + (1 - b2) * gi * gi;
        pi -= step_size * mi / (std::sqrt(vi) * inv_bc2_sqrt + eps);
        p[i] = static_cast<T>(pi);
        mnew[j] = static_cast<float>(mi);
        vnew[j] = static_cast<float>(vi);
        am_new = std::max(am_new, std::fabs(mnew[j]));
        av_new = std::max(av_new, vnew[j]);
      }
      am[b] = am_new;
      av[b] = av_new;
      for (int64_t j = 0; j < len; ++j) {
        mc[begin + j] = encode(smap, mnew[j], am_new);
        vc[begin + j] = encode(umap, vnew[j], av_new);
      }
    }
  });
}

}  // namespace shardlab::ops

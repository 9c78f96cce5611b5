// Rotary position embedding on the CPU in Hugging Face's rotate_half convention: the pairs
// (i, i + D/2) of each head vector rotate by pos * inv_freq[i]. Llama-3 frequency scaling included.
#include <omp.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/fused.h"
#include "core/trace.h"

namespace shardlab::ops {

std::vector<double> rope_inv_freq(const RopeConfig& config, int64_t head_dim) {
  const char* op = "rope_inv_freq";
  SL_CHECK(head_dim > 0 && head_dim % 2 == 0, op, ": head_dim must be positive and even, got ", head_dim);
  SL_CHECK(config.theta > 0.0, op, ": theta must be positive, got ", config.theta);
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0 / std::pow(config.theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  if (!config.scaling) return inv_freq;

  // Llama-3 scaling, as transformers' _compute_llama3_parameters: long wavelengths (low
  // frequencies) are slowed by `factor`, short ones kept, and the band in between interpolated.
  const RopeScaling& s = *config.scaling;
  SL_CHECK(s.factor > 0.0, op, ": rope_scaling factor must be positive, got ", s.factor);
  SL_CHECK(s.original_max_position_embeddings > 0, op,
           ": rope_scaling original_max_position_embeddings must be positive, got ",
           s.original_max_position_embeddings);
  SL_CHECK(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor, op,
           ": rope_scaling needs 0 < low_freq_factor < high_freq_factor, got low_freq_factor ", s.low_freq_factor,
           " and high_freq_factor ", s.high_freq_factor);
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_ctx / s.low_freq_factor;
  const double high_freq_wavelen = old_ctx / s.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
  }
  return inv_freq;
}

namespace {

// Rotates x (B, H, T, D) by sign * angle into a new contiguous tensor. x may have any strides
// (attention heads are usually a transposed view of (B, T, H, D)).
Tensor rope_apply(const char* op, const Tensor& x, const Tensor& positions, const RopeConfig& config, double sign) {
  check_cpu(op, {x, positions});
  check_float(op, x);
  SL_CHECK(x.dim() == 4, op, ": x must be (B, H, T, D), got shape ", shape_str(x.shape()));
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  SL_CHECK(D % 2 == 0, op, ": head dim D must be even, got x of shape ", shape_str(x.shape()));
  const bool per_batch = positions.dim() == 2;
  SL_CHECK((positions.dim() == 1 && positions.size(0) == T) ||
               (per_batch && positions.size(0) == B && positions.size(1) == T),
           op, ": positions must be (T,) = ", shape_str({T}), " or (B, T) = ", shape_str({B, T}), " for x of shape ",
           shape_str(x.shape()), ", got ", shape_str(positions.shape()));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  const int64_t half = D / 2;
  const std::vector<double> inv_freq = rope_inv_freq(config, D);
  const int64_t pos_rows = per_batch ? B : 1;

  // Positions as f64, in (pos_rows, T) order.
  std::vector<double> pos(static_cast<size_t>(pos_rows * T));
  dispatch_index(positions.dtype(), op, [&]<typename I>() {
    const I* p = positions.data<I>();
    const int64_t s0 = per_batch ? positions.stride(0) : 0, s1 = positions.stride(-1);
    for (int64_t b = 0; b < pos_rows; ++b)
      for (int64_t t = 0; t < T; ++t) pos[b * T + t] = static_cast<double>(p[b * s0 + t * s1]);
  });

  dispatch_float(x.dtype(), op, [&]<typename T_>() {
    using A = acc_t<T_>;
    // cos/sin tables (pos_rows, T, D/2): angles and their cos/sin in f64, stored in the
    // arithmetic type. H times smaller than x, so worth building once.
    const int64_t table_rows = pos_rows * T;
    std::vector<A> cos_t(static_cast<size_t>(table_rows * half)), sin_t(cos_t.size());
    const bool par_table = table_rows * half >= cpu::kParallelGrain / 8 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par_table)
    for (int64_t r = 0; r < table_rows; ++r)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos[r] * inv_freq[i];
        cos_t[r * half + i] = static_cast<A>(std::cos(angle));
        sin_t[r * half + i] = static_cast<A>(sign * std::sin(angle));
      }

    const T_* xp = x.data<T_>();
    T_* yp = y.data<T_>();
    const int64_t sb = x.stride(0), sh = x.stride(1), st = x.stride(2), sd = x.stride(3);
    const int64_t rows = B * H * T;
    const bool par = rows > 1 && x.numel() >= cpu::kParallelGrain && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = r % T, h = (r / T) % H, b = r / (T * H);
      const T_* xr = xp + b * sb + h * sh + t * st;
      T_* yr = yp + r * D;
      const int64_t tr = (per_batch ? b * T : 0) + t;
      const A* c = cos_t.data() + tr * half;
      const A* s = sin_t.data() + tr * half;
      if (sd == 1) {
        for (int64_t i = 0; i < half; ++i) {
          const A x1 = static_cast<A>(xr[i]), x2 = static_cast<A>(xr[i + half]);
          yr[i] = static_cast<T_>(x1 * c[i] - x2 * s[i]);
          yr[i + half] = static_cast<T_>(x2 * c[i] + x1 * s[i]);
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const A x1 = static_cast<A>(xr[i * sd]), x2 = static_cast<A>(xr[(i + half) * sd]);
          yr[i] = static_cast<T_>(x1 * c[i] - x2 * s[i]);
          yr[i + half] = static_cast<T_>(x2 * c[i] + x1 * s[i]);
        }
      }
    }
  });
  return y;
}

}  // namespace

Tensor rope_fwd(const Tensor& x, const Tensor& positions, const RopeConfig& config) {
  SL_FORWARD_TO_DEVICE(rope_fwd, x.device(), x, positions, config);
  SL_TRACE_OP("rope_fwd", x);
  return rope_apply("rope_fwd", x, positions, config, 1.0);
}

// The rotation is orthogonal, so its transpose (the backward) is the rotation by -angle.
Tensor rope_bwd(const Tensor& dy, const Tensor& positions, const RopeConfig& config) {
  SL_FORWARD_TO_DEVICE(rope_bwd, dy.device(), dy, positions, config);
  SL_TRACE_OP("rope_bwd", dy);
  return rope_apply("rope_bwd", dy, positions, config, -1.0);
}

}  // namespace shardlab::ops

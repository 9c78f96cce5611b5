// DynamicLossScaler (DeepSpeed's update rule) and the fused unscale + finite-check kernel.
#include "nn/loss_scaler.h"

#include <atomic>
#include <cmath>
#include <cstring>

#include "autograd/functions.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops.h"

namespace shardlab::nn {

namespace {

// Inf and NaN are exactly the values whose exponent bits are all ones; testing the bits of the
// stored value vectorises and catches a 16-bit rounding that overflowed to inf.
template <typename T> inline bool non_finite(T v) {
  if constexpr (sizeof(T) == 2) {
    uint16_t b;
    std::memcpy(&b, &v, 2);
    constexpr uint16_t mask = std::is_same_v<T, bf16_t> ? 0x7f80 : 0x7c00;
    return (b & mask) == mask;
  } else if constexpr (sizeof(T) == 4) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return (b & 0x7f800000u) == 0x7f800000u;
  } else {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    return (b & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
  }
}

// f64 on either side computes in f64, everything else in f32.
template <typename Tin, typename Tout>
using compute_t = std::conditional_t<std::is_same_v<Tin, double> || std::is_same_v<Tout, double>, double, float>;

template <typename Tin, typename Tout>
bool unscale_cpu(const Tensor& dst, const Tensor& src, double inv_scale) {
  using C = compute_t<Tin, Tout>;
  const C inv = static_cast<C>(inv_scale);
  const Tin* s = static_cast<const Tin*>(src.raw_data());
  Tout* d = static_cast<Tout*>(dst.raw_data());
  std::atomic<bool> bad{false};
  cpu::strided_loop<2>(dst.shape(), {dst.strides(), src.strides()}, {0, 0},
                       [&](const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st, int64_t n) {
                         Tout* dp = d + off[0];
                         const Tin* sp = s + off[1];
                         bool local = false;
                         if (st[0] == 1 && st[1] == 1) {
                           for (int64_t k = 0; k < n; ++k) {
                             Tout v = static_cast<Tout>(static_cast<C>(sp[k]) * inv);
                             dp[k] = v;
                             local |= non_finite(v);
                           }
                         } else {
                           for (int64_t k = 0; k < n; ++k) {
                             Tout v = static_cast<Tout>(static_cast<C>(sp[k * st[1]]) * inv);
                             dp[k * st[0]] = v;
                             local |= non_finite(v);
                           }
                         }
                         if (local) bad.store(true, std::memory_order_relaxed);
                       });
  return bad.load();
}

template <typename T>
bool scan_cpu(const Tensor& t) {
  const T* p = static_cast<const T*>(t.raw_data());
  std::atomic<bool> bad{false};
  cpu::strided_loop<1>(t.shape(), {t.strides()}, {0},
                       [&](const std::array<int64_t, 1>& off, const std::array<int64_t, 1>& st, int64_t n) {
                         bool local = false;
                         for (int64_t k = 0; k < n; ++k) local |= non_finite(p[off[0] + k * st[0]]);
                         if (local) bad.store(true, std::memory_order_relaxed);
                       });
  return bad.load();
}

// DeepSpeed's own check (_has_inf_or_nan): the f32 sum of a tensor is finite iff its elements are
// (a finite sum overflowing to inf is also reported, which skips a step that was overflowing anyway).
bool has_inf_or_nan_by_sum(const Tensor& t) {
  Tensor f = ops::to_dtype(t, t.dtype() == DType::f64 ? DType::f64 : DType::f32);
  return !std::isfinite(ops::to_dtype(ops::sum(f), DType::f64).item());
}

}  // namespace

bool unscale_into(const Tensor& dst, const Tensor& src, double inv_scale) {
  SL_CHECK(dst.shape() == src.shape(), "unscale_into: dst shape ", shape_str(dst.shape()), " != src shape ",
           shape_str(src.shape()));
  SL_CHECK(is_floating(dst.dtype()) && is_floating(src.dtype()), "unscale_into: needs floating tensors, got dst ",
           dtype_name(dst.dtype()), " and src ", dtype_name(src.dtype()));
  SL_CHECK(dst.device() == src.device(), "unscale_into: dst and src on different devices (shape ",
           shape_str(dst.shape()), ")");
  if (!dst.device().is_cpu()) {
    ops::copy_(dst, ops::mul_scalar(src, inv_scale));
    return has_inf_or_nan_by_sum(dst);
  }
  bool bad = dispatch_float(src.dtype(), "unscale_into", [&]<typename Tin>() {
    return dispatch_float(dst.dtype(), "unscale_into",
                          [&]<typename Tout>() { return unscale_cpu<Tin, Tout>(dst, src, inv_scale); });
  });
  dst.bump_version();
  return bad;
}

bool has_inf_or_nan(const Tensor& t) {
  if (!is_floating(t.dtype())) return false;
  if (!t.device().is_cpu()) return has_inf_or_nan_by_sum(t);
  return dispatch_float(t.dtype(), "has_inf_or_nan", [&]<typename T>() { return scan_cpu<T>(t); });
}

DynamicLossScaler::DynamicLossScaler(const LossScalerConfig& config)
    : config_(config), dynamic_(config.loss_scale == 0.0), hysteresis_left_(config.hysteresis) {
  SL_CHECK(config.loss_scale >= 0.0 && std::isfinite(config.loss_scale),
           "DynamicLossScaler: loss_scale must be 0 (dynamic) or a finite positive scale, got ", config.loss_scale);
  SL_CHECK(config.loss_scale_window > 0, "DynamicLossScaler: loss_scale_window must be positive, got ",
           config.loss_scale_window);
  SL_CHECK(config.hysteresis > 0, "DynamicLossScaler: hysteresis must be positive, got ", config.hysteresis);
  SL_CHECK(config.min_loss_scale > 0.0 && std::isfinite(config.min_loss_scale),
           "DynamicLossScaler: min_loss_scale must be finite and positive, got ", config.min_loss_scale);
  scale_ = dynamic_ ? std::ldexp(1.0, config.initial_scale_power) : config.loss_scale;
}

Tensor DynamicLossScaler::scale_loss(const Tensor& loss) const { return mul_scalar(loss, scale_); }

bool DynamicLossScaler::unscale_and_check(const std::vector<Tensor>& grads) const {
  const double inv = 1.0 / scale_;
  bool overflow = false;
  for (const Tensor& g : grads)
    if (g.defined()) overflow |= unscale_into(g, g, inv);
  return overflow;
}

void DynamicLossScaler::update(bool overflow) {
  if (!dynamic_) return;
  if (overflow) {
    if (config_.hysteresis == 1 || hysteresis_left_ == 1) {
      SL_CHECK(!(scale_ == config_.min_loss_scale && config_.raise_error_at_min_scale),
               "DynamicLossScaler: overflow at iteration ", iter_, " with the loss scale already at its minimum ",
               config_.min_loss_scale, " (min_loss_scale); cannot decrease it further");
      scale_ = std::max(scale_ / 2.0, config_.min_loss_scale);
    } else {
      --hysteresis_left_;
    }
    last_overflow_iter_ = iter_;
  } else {
    if (config_.consecutive_hysteresis) hysteresis_left_ = config_.hysteresis;
    const int64_t stable = iter_ - last_overflow_iter_ - 1;
    if (stable > 0 && stable % config_.loss_scale_window == 0) {
      if (!config_.consecutive_hysteresis) hysteresis_left_ = config_.hysteresis;
      scale_ *= 2.0;
    }
  }
  ++iter_;
}

void DynamicLossScaler::load_state(const State& s) {
  SL_CHECK(s.scale > 0.0 && std::isfinite(s.scale), "DynamicLossScaler::load_state: bad scale ", s.scale);
  scale_ = s.scale;
  iter_ = s.iteration;
  last_overflow_iter_ = s.last_overflow_iteration;
  hysteresis_left_ = s.hysteresis_left;
}

}  // namespace shardlab::nn

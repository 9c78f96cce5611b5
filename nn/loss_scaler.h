// Loss scaling for fp16/bf16 training with DeepSpeed's "fp16" knobs and update rule
// (deepspeed/runtime/fp16/loss_scaler.py, DynamicLossScaler.update_scale), and the fused
// unscale + inf/NaN check that decides whether a step is skipped.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace shardlab::nn {

// DeepSpeed's fp16 config block, same names and defaults (deepspeed/runtime/constants.py).
struct LossScalerConfig {
  double loss_scale = 0.0;           // 0: dynamic scaling; > 0: this static scale, never changed
  int initial_scale_power = 16;      // dynamic: the first scale is 2^initial_scale_power
  int64_t loss_scale_window = 1000;  // clean steps between two doublings (see update())
  int hysteresis = 2;                // DeepSpeed's delayed_shift: overflows absorbed before halving
  bool consecutive_hysteresis = false;  // refill the hysteresis on every clean step, not only on growth
  double min_loss_scale = 1.0;       // halving never goes below this
  // DeepSpeed raises "Current loss scale already at minimum" on an overflow at the minimum scale.
  bool raise_error_at_min_scale = true;
};

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(const LossScalerConfig& config = {});

  double scale() const { return scale_; }
  bool dynamic() const { return dynamic_; }
  // loss * scale(), differentiable: backward through it yields scaled gradients.
  Tensor scale_loss(const Tensor& loss) const;
  // Multiplies every defined gradient by 1/scale() in place (16-bit grads are computed in f32 and
  // rounded once) and returns true when any result is inf or NaN. Every tensor is processed even
  // after an overflow is found: the step is skipped then, so their contents no longer matter.
  bool unscale_and_check(const std::vector<Tensor>& grads) const;
  // Advances one iteration. Dynamic mode follows DeepSpeed's update_scale exactly:
  //  overflow: if hysteresis == 1 or the hysteresis left is 1, scale = max(scale / 2, min_loss_scale)
  //            (an error instead when the scale already equals min_loss_scale and
  //            raise_error_at_min_scale), else the hysteresis left drops by one; the hysteresis left is
  //            NOT refilled by halving. The iteration is remembered as the last overflow.
  //  clean:    consecutive_hysteresis refills the hysteresis left. With
  //            stable = iteration - last_overflow_iteration - 1 (last = -1 at start), when stable > 0 and
  //            stable % loss_scale_window == 0 the scale doubles and (without consecutive_hysteresis)
  //            the hysteresis is refilled. So the first doubling comes on the (window+1)-th clean step
  //            after an overflow (or from the start), the next ones every window clean steps.
  // Static mode ignores the call (the caller still skips overflowing steps).
  void update(bool overflow);

  int hysteresis_left() const { return hysteresis_left_; }
  int64_t iteration() const { return iter_; }
  int64_t last_overflow_iteration() const { return last_overflow_iter_; }

  // Checkpointable state (the config is not part of it).
  struct State {
    double scale;
    int64_t iteration;
    int64_t last_overflow_iteration;
    int hysteresis_left;
  };
  State state() const { return {scale_, iter_, last_overflow_iter_, hysteresis_left_}; }
  void load_state(const State& s);

 private:
  LossScalerConfig config_;
  bool dynamic_;
  double scale_;
  int64_t iter_ = 0;
  int64_t last_overflow_iter_ = -1;
  int hysteresis_left_;
};

// dst <- src * inv_scale (converted to dst's dtype, 16-bit values computed in f32, rounded once),
// returning true when any stored value is inf or NaN. dst may be src itself (in-place unscale).
// Shapes must match; both must be floating and on the same device.
bool unscale_into(const Tensor& dst, const Tensor& src, double inv_scale);
// True when any element of t is inf or NaN.
bool has_inf_or_nan(const Tensor& t);

}  // namespace shardlab::nn

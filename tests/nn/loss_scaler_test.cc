// DynamicLossScaler against hand-written scale trajectories derived from DeepSpeed's rules, and the
// fused unscale + inf/NaN check against exact powers-of-two arithmetic.
//
// DeepSpeed's DynamicLossScaler.update_scale (deepspeed/runtime/fp16/loss_scaler.py), which the
// expectations below are derived from by hand:
//  * overflow: if delayed_shift (= "hysteresis") == 1 or cur_hysteresis == 1, the scale becomes
//    max(scale / 2, min_scale) (an exception when it already equals min_scale and
//    raise_error_at_min_scale); otherwise cur_hysteresis -= 1. Halving does not refill
//    cur_hysteresis. last_overflow_iter = cur_iter.
//  * clean step: consecutive_hysteresis refills cur_hysteresis. stable = cur_iter -
//    last_overflow_iter - 1; if stable > 0 and stable % scale_window == 0 the scale doubles (and
//    without consecutive_hysteresis, cur_hysteresis is refilled).
//  * cur_iter += 1 after either.
//  Config mapping (deepspeed/runtime/constants.py): loss_scale 0 = dynamic, init_scale =
//  2^initial_scale_power (default 16), scale_window = loss_scale_window (1000), delayed_shift =
//  hysteresis (2), consecutive_hysteresis (false), min_scale = min_loss_scale (1).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autograd/functions.h"
#include "core/ops.h"
#include "nn/loss_scaler.h"

namespace shardlab::nn {
namespace {

using ::testing::HasSubstr;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Runs one iteration per entry of `overflow_at`: a gradient holding scale * (1, -2) (and an inf
// where the entry is true) is unscaled and checked, then the scaler is updated with the result.
// Returns the scale after each update.
std::vector<double> run(DynamicLossScaler& s, const std::vector<bool>& overflow_at) {
  std::vector<double> scales;
  for (bool inject : overflow_at) {
    const double sc = s.scale();
    Tensor g = Tensor::from_vector({sc, -2 * sc, inject ? kInf : 3 * sc}, {3}, DType::f32);
    const bool overflow = s.unscale_and_check({g});
    EXPECT_EQ(overflow, inject);
    if (!overflow) {
      EXPECT_EQ(g.to_double_vector(), (std::vector<double>{1, -2, 3}));
    }
    s.update(overflow);
    scales.push_back(s.scale());
  }
  return scales;
}

// Iterations 1 and 3..7 overflow, 8..13 are clean, 14 and 15 overflow.
const std::vector<bool> kPattern = {false, true, false, true, true, true, true, false,
                                    false, false, false, false, false, false, true, true};

TEST(DynamicLossScaler, DefaultsAreDeepSpeeds) {
  DynamicLossScaler s;
  EXPECT_TRUE(s.dynamic());
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_EQ(s.hysteresis_left(), 2);
  // The first doubling comes after 1001 clean steps (stable interval 1000 at iteration 1000).
  for (int i = 0; i < 1000; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 131072.0);
}

TEST(DynamicLossScaler, TrajectoryWithHysteresisMinScaleAndGrowth) {
  LossScalerConfig c;
  c.initial_scale_power = 4;  // 16
  c.loss_scale_window = 3;
  c.hysteresis = 2;
  c.min_loss_scale = 2;
  c.raise_error_at_min_scale = false;
  DynamicLossScaler s(c);
  // it 0 clean: stable 0, no growth.            16
  // it 1 overflow: hysteresis 2 -> 1, kept.      16
  // it 2 clean: stable 0; hysteresis stays 1.    16
  // it 3..5 overflow: hysteresis is 1: halve.    8, 4, 2
  // it 6 overflow: max(2 / 2, min 2).            2
  // it 7..9 clean: stable 0, 1, 2.               2, 2, 2
  // it 10 clean: stable 3 = window: double, hysteresis refilled to 2.   4
  // it 11, 12 clean: stable 4, 5.                4, 4
  // it 13 clean: stable 6: double.               8
  // it 14 overflow: hysteresis 2 -> 1, kept.     8
  // it 15 overflow: hysteresis 1: halve.         4
  const std::vector<double> want = {16, 16, 16, 8, 4, 2, 2, 2, 2, 2, 4, 4, 4, 8, 8, 4};
  EXPECT_EQ(run(s, kPattern), want);
  EXPECT_EQ(s.iteration(), 16);
  EXPECT_EQ(s.last_overflow_iteration(), 15);
  EXPECT_EQ(s.hysteresis_left(), 1);
}

TEST(DynamicLossScaler, ConsecutiveHysteresisRefillsOnEveryCleanStep) {
  LossScalerConfig c;
  c.initial_scale_power = 4;
  c.loss_scale_window = 3;
  c.hysteresis = 2;
  c.consecutive_hysteresis = true;
  c.min_loss_scale = 2;
  c.raise_error_at_min_scale = false;
  DynamicLossScaler s(c);
  // Same pattern; the clean step at it 2 refills the hysteresis, so it 3 is absorbed too and the
  // halvings start one iteration later (it 4: 8, it 5: 4, it 6: 2); the rest is unchanged.
  const std::vector<double> want = {16, 16, 16, 16, 8, 4, 2, 2, 2, 2, 4, 4, 4, 8, 8, 4};
  EXPECT_EQ(run(s, kPattern), want);
}

TEST(DynamicLossScaler, HysteresisOneHalvesOnEveryOverflow) {
  LossScalerConfig c;
  c.initial_scale_power = 10;
  c.loss_scale_window = 2;
  c.hysteresis = 1;
  DynamicLossScaler s(c);
  // it 0, 1 overflow: 512, 256; it 2, 3 clean: stable 0, 1; it 4: stable 2: double; it 5 overflow.
  EXPECT_EQ(run(s, {true, true, false, false, false, true}),
            (std::vector<double>{512, 256, 256, 256, 512, 256}));
}

TEST(DynamicLossScaler, OverflowAtTheMinimumScaleRaisesLikeDeepSpeed) {
  LossScalerConfig c;
  c.initial_scale_power = 2;  // 4
  c.hysteresis = 1;
  c.min_loss_scale = 2;
  DynamicLossScaler s(c);
  s.update(true);  // 4 -> 2
  EXPECT_EQ(s.scale(), 2.0);
  try {
    s.update(true);
    FAIL() << "expected an error at the minimum scale";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("min_loss_scale"));
  }
}

TEST(DynamicLossScaler, StaticScaleNeverChangesButStillDetectsOverflow) {
  LossScalerConfig c;
  c.loss_scale = 128;
  DynamicLossScaler s(c);
  EXPECT_FALSE(s.dynamic());
  EXPECT_EQ(run(s, {true, false, false, true}), (std::vector<double>{128, 128, 128, 128}));
}

TEST(DynamicLossScaler, StateRoundTrips) {
  LossScalerConfig c;
  c.initial_scale_power = 4;
  c.loss_scale_window = 3;
  c.min_loss_scale = 2;
  c.raise_error_at_min_scale = false;
  DynamicLossScaler a(c), b(c);
  run(a, {false, true, false, true});
  b.load_state(a.state());
  EXPECT_EQ(run(a, kPattern), run(b, kPattern));
}

TEST(DynamicLossScaler, ScaleLossIsDifferentiable) {
  DynamicLossScaler s;
  Tensor w = Tensor::from_vector({0.5}, {1}, DType::f32).set_requires_grad(true);
  backward(s.scale_loss(sum(w * 3.0)));
  EXPECT_EQ(w.grad().to_double_vector()[0], 3.0 * 65536.0);
}

TEST(UnscaleAndCheck, Bf16AndF16AreUnscaledExactly) {
  for (DType dt : {DType::bf16, DType::f16, DType::f32, DType::f64}) {
    Tensor g = Tensor::from_vector({512, -1024, 0.5, 0}, {2, 2}, dt);
    EXPECT_FALSE(unscale_into(g, g, 1.0 / 256)) << dtype_name(dt);
    EXPECT_EQ(g.to_double_vector(), (std::vector<double>{2, -4, 1.0 / 512, 0})) << dtype_name(dt);
  }
}

TEST(UnscaleAndCheck, DetectsNanAndInfInEveryDtypeAndLayout) {
  for (DType dt : {DType::bf16, DType::f16, DType::f32, DType::f64}) {
    for (double bad : {kInf, -kInf, std::nan("")}) {
      Tensor base = Tensor::from_vector({1, 2, 3, 4, 5, bad}, {2, 3}, dt);
      Tensor view = ops::transpose(base, 0, 1);  // non-contiguous (3, 2)
      EXPECT_TRUE(unscale_into(view, view, 0.5)) << dtype_name(dt) << " " << bad;
      EXPECT_TRUE(has_inf_or_nan(base)) << dtype_name(dt);
    }
    EXPECT_FALSE(has_inf_or_nan(Tensor::from_vector({1, -2}, {2}, dt)));
  }
}

TEST(UnscaleAndCheck, A16BitResultThatRoundsToInfIsAnOverflow) {
  // 60000 is finite in f16 but 60000 * 4 is above its largest value 65504 (a scale below 1, as a
  // min_loss_scale < 1 allows, multiplies the gradients up).
  Tensor g = Tensor::from_vector({60000, 1}, {2}, DType::f16);
  EXPECT_TRUE(unscale_into(g, g, 4.0));
  // Into an f32 destination the same value is fine.
  Tensor g2 = Tensor::from_vector({60000, 1}, {2}, DType::f16);
  Tensor out = Tensor::empty({2}, DType::f32);
  EXPECT_FALSE(unscale_into(out, g2, 4.0));
  EXPECT_EQ(out.to_double_vector(), (std::vector<double>{240000, 4}));
}

TEST(UnscaleAndCheck, FindsOneInfInALargeParallelTensor) {
  const int64_t n = 200001;
  for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
    Tensor g = Tensor::ones({n}, DType::bf16);
    ops::fill_(ops::slice(g, 0, at, at + 1), kInf);
    EXPECT_TRUE(unscale_into(g, g, 0.5)) << at;
  }
  Tensor g = Tensor::full({n}, 8.0, DType::bf16);
  EXPECT_FALSE(unscale_into(g, g, 0.5));
  EXPECT_EQ(ops::sum(ops::to_dtype(g, DType::f64)).item(), 4.0 * n);
}

TEST(UnscaleAndCheck, BadInputsNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 2});
  try {
    unscale_into(a, b, 1.0);
    FAIL() << "expected a shape error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unscale_into"));
    EXPECT_THAT(e.what(), HasSubstr("(2, 3)"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 2)"));
  }
  EXPECT_THROW(unscale_into(Tensor::zeros({2}, DType::i64), Tensor::zeros({2}), 1.0), Error);
}

}  // namespace
}  // namespace shardlab::nn

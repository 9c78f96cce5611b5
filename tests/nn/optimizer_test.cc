// Optimizers against independent f64 re-implementations of the torch update rules, clipping
// against a hand-computed norm, and schedules against hand-computed values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "nn/lr_schedule.h"
#include "nn/optimizer.h"
#include "tests/tolerances.h"

namespace shardlab::nn {
namespace {

Tensor param(std::vector<double> v, DType dtype = DType::f64) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, dtype).set_requires_grad(true);
}

TEST(AdamW, MatchesTheBiasCorrectedReferenceOverSeveralSteps) {
  const double lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.05;
  Tensor p = param({1.0, -2.0, 0.5});
  AdamW opt({p}, lr, b1, b2, eps, wd);
  std::vector<double> ref = {1.0, -2.0, 0.5}, m(3, 0.0), v(3, 0.0);
  for (int t = 1; t <= 5; ++t) {
    // gradient of sum(p^3 / 3) is p^2 (evaluated at the current parameters)
    Tensor loss = sum(pow_scalar(p, 3.0)) * (1.0 / 3.0);
    opt.zero_grad();
    backward(loss);
    opt.step();
    for (int i = 0; i < 3; ++i) {
      double g = ref[i] * ref[i];
      ref[i] -= lr * wd * ref[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      ref[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
    std::vector<double> got = p.to_double_vector();
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], ref[i], 1e-12) << "step " << t << " element " << i;
  }
  EXPECT_EQ(opt.steps_taken(), 5);
  for (auto& [name, t] : opt.state_dict()) {
    if (name != "step") {
      EXPECT_EQ(t.tag(), MemTag::optimizer_state) << name;
    }
  }
}

TEST(AdamW, Bf16ParametersUseF32StateAndRoundOnce) {
  Tensor p = param({1.0, 2.0}, DType::bf16);
  AdamW opt({p}, 0.01, 0.9, 0.999, 1e-8, 0.0);
  p.set_grad(Tensor::from_vector({1.0, -1.0}, {2}, DType::bf16));
  opt.step();
  // First Adam step moves each weight by lr * sign(g) (m_hat / sqrt(v_hat) = +-1).
  std::vector<double> got = p.to_double_vector();
  EXPECT_NEAR(got[0], 0.99, testing::tolerance("elementwise", DType::bf16).atol);
  EXPECT_NEAR(got[1], 2.01, 2 * testing::tolerance("elementwise", DType::bf16).atol);
  EXPECT_EQ(opt.state_dict()[1].second.dtype(), DType::f32);
}

TEST(AdamW, StateDictRoundTripContinuesIdentically) {
  auto run = [](bool reload) {
    Tensor p = param({0.3, -0.7});
    auto opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, 0.05);
    for (int t = 0; t < 6; ++t) {
      if (reload && t == 3) {
        NamedTensors saved;
        for (auto& [n, s] : opt->state_dict()) saved.emplace_back(n, ops::clone(s));
        opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, 0.05);
        opt->load_state_dict(saved);
      }
      opt->zero_grad();
      backward(sum(p * p));
      opt->step();
    }
    return p.to_double_vector();
  };
  EXPECT_EQ(run(false), run(true));
}

TEST(SGD, MomentumAndNesterovMatchTorchsRule) {
  for (bool nesterov : {false, true}) {
    const double lr = 0.1, mu = 0.9, wd = 0.01;
    Tensor p = param({1.0, -1.0});
    SGD opt({p}, lr, mu, wd, nesterov);
    std::vector<double> ref = {1.0, -1.0}, buf(2, 0.0);
    for (int t = 0; t < 4; ++t) {
      opt.zero_grad();
      backward(sum(p * p));  // g = 2p
      opt.step();
      for (int i = 0; i < 2; ++i) {
        double d = 2 * ref[i] + wd * ref[i];
        buf[i] = t == 0 ? d : mu * buf[i] + d;
        ref[i] -= lr * (nesterov ? d + mu * buf[i] : buf[i]);
      }
      std::vector<double> got = p.to_double_vector();
      for (int i = 0; i < 2; ++i) EXPECT_NEAR(got[i], ref[i], 1e-12) << "nesterov " << nesterov << " step " << t;
    }
  }
}

TEST(ClipGradNorm, ScalesToMaxNormAndReturnsTheOriginalNorm) {
  Tensor a = param({0, 0}), b = param({0});
  a.set_grad(Tensor::from_vector({3, 4}, {2}, DType::f64));
  b.set_grad(Tensor::from_vector({12}, {1}, DType::f64));
  double norm = clip_grad_norm({a, b}, 6.5);  // sqrt(9 + 16 + 144) = 13
  EXPECT_DOUBLE_EQ(norm, 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(a.grad().to_double_vector()[1], 4 * coef, 1e-12);
  EXPECT_NEAR(grad_norm({a, b}), 6.5, 1e-5);
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 100.0), grad_norm({a, b}));  // under the limit: untouched
}

TEST(ClipGradNorm, NonFiniteNormIsReportedNotApplied) {
  Tensor a = param({0, 0});
  a.set_grad(Tensor::from_vector({NAN, 1}, {2}, DType::f64));
  EXPECT_TRUE(std::isnan(clip_grad_norm({a}, 1.0)));
  EXPECT_EQ(a.grad().to_double_vector()[1], 1.0);
}

TEST(LrSchedule, WarmupThenConstantLinearAndCosine) {
  LrSchedule s{LrScheduleKind::linear, 1.0, 10, 110};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(60), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(110), 0.0);
  s.kind = LrScheduleKind::cosine;
  EXPECT_NEAR(s.lr_at(60), 0.5, 1e-12);
  EXPECT_NEAR(s.lr_at(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  s.kind = LrScheduleKind::constant;
  EXPECT_DOUBLE_EQ(s.lr_at(100), 1.0);
  EXPECT_EQ(parse_lr_schedule("cosine"), LrScheduleKind::cosine);
  EXPECT_THROW(parse_lr_schedule("cosine_with_restarts"), Error);
}

TEST(Optimizer, RejectsParametersThatDoNotRequireGrad) {
  EXPECT_THROW(AdamW({Tensor::zeros({2})}, 0.1), Error);
}

TEST(AdamW, FitsALinearRegression) {
  // y = X w* with w* = (2, -3); AdamW must find it.
  Tensor x = Tensor::randn({64, 2}, 5);
  Tensor w_true = Tensor::from_vector({2, -3}, {2, 1});
  Tensor y = matmul(x, w_true);
  Tensor w = Tensor::zeros({2, 1}).set_requires_grad(true);
  AdamW opt({w}, 0.1, 0.9, 0.999, 1e-8, 0.0);
  double first = 0, last = 0;
  for (int t = 0; t < 300; ++t) {
    Tensor err = matmul(x, w) - y;
    Tensor loss = mean(err * err);
    if (t == 0) first = loss.item();
    last = loss.item();
    opt.zero_grad();
    backward(loss);
    opt.step();
  }
  EXPECT_LT(last, first * 1e-4);
  EXPECT_NEAR(w.to_double_vector()[0], 2.0, 1e-2);
  EXPECT_NEAR(w.to_double_vector()[1], -3.0, 1e-2);
}

}  // namespace
}  // namespace shardlab::nn

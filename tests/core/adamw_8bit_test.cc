// 8-bit AdamW kernels: bitsandbytes' dynamic map checked against its formula, blockwise
// quantization against a brute-force nearest-code search, and the fused step against adamw_step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"

namespace shardlab::ops {
namespace {

using testing::HasSubstr;

TEST(DynamicMap, SignedMapHasBitsandbytesValues) {
  const auto& m = dynamic_map(true);
  for (int i = 1; i < 256; ++i) EXPECT_LT(m[i - 1], m[i]) << "index " << i;
  // 127 negative values, then 0, then 128 positive ones ending in 1.0.
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[255], 1.0f);
  // exponent 0: one midpoint of linspace(0.1, 1, 2) = 0.55, times 1e-6, both signs
  EXPECT_FLOAT_EQ(m[128], 0.55e-6f);
  EXPECT_FLOAT_EQ(m[126], -0.55e-6f);
  // exponent 1: midpoints of (0.1, 0.55, 1) = 0.325, 0.775, times 1e-5
  EXPECT_FLOAT_EQ(m[129], 3.25e-6f);
  EXPECT_FLOAT_EQ(m[130], 7.75e-6f);
  // exponent 6: 64 midpoints of linspace(0.1, 1, 65); the largest is 1 - 0.9/128, the first 0.1 + 0.9/128
  EXPECT_FLOAT_EQ(m[254], 1.0f - 0.9f / 128);
  EXPECT_FLOAT_EQ(m[0], -(1.0f - 0.9f / 128));  // no -1: the signed map is asymmetric
  EXPECT_FLOAT_EQ(m[255 - 64], 0.1f + 0.9f / 128);
}

TEST(DynamicMap, UnsignedMapHasBitsandbytesValues) {
  const auto& u = dynamic_map(false);
  for (int i = 1; i < 256; ++i) EXPECT_LT(u[i - 1], u[i]) << "index " << i;
  EXPECT_EQ(u[0], 0.0f);
  EXPECT_EQ(u[255], 1.0f);
  // exponent 0 has 2 fractions: midpoints of (0.1, 0.55, 1) times 1e-6
  EXPECT_FLOAT_EQ(u[1], 0.325e-6f);
  EXPECT_FLOAT_EQ(u[2], 0.775e-6f);
  // exponent 6: 128 midpoints of linspace(0.1, 1, 129)
  EXPECT_FLOAT_EQ(u[254], 1.0f - 0.9f / 256);
  EXPECT_FLOAT_EQ(u[255 - 128], 0.1f + 0.9f / 256);
  // decade sizes 2, 4, ..., 128: entries below 1e-3 are 2 + 4 + 8 + 16 = 30 (plus the zero)
  int below = 0;
  for (float v : u) below += v < 1e-3f;
  EXPECT_EQ(below, 31);
}

TEST(DynamicMap, QuantizeNearestMatchesBruteForce) {
  for (bool is_signed : {true, false}) {
    const auto& map = dynamic_map(is_signed);
    std::vector<double> xs = Tensor::rand({2000}, 3, DType::f64, is_signed ? -1.0 : 0.0, 1.0).to_double_vector();
    for (double e : {1e-7, 3e-6, 2e-4, 0.05, 0.999, 1.0, 1.5}) xs.push_back(e);
    for (double xd : xs) {
      const float x = static_cast<float>(xd);
      int best = 0;
      for (int k = 1; k < 256; ++k)
        if (std::fabs(map[k] - x) < std::fabs(map[best] - x)) best = k;
      const uint8_t got = quantize_nearest(map, x);
      EXPECT_EQ(std::fabs(map[got] - x), std::fabs(map[best] - x)) << "x " << x << " signed " << is_signed;
    }
  }
}

TEST(QuantizeBlockwise, RoundTripErrorIsAtMostHalfACodeGapPerBlock) {
  // 1000 elements: 3 full blocks of 256 and a tail of 232, each with its own scale.
  const int64_t n = 1000;
  std::vector<double> x = Tensor::randn({n}, 11, DType::f64).to_double_vector();
  for (int64_t i = 0; i < n; ++i) x[i] *= std::pow(10.0, static_cast<double>(i / 256) - 2);
  for (bool is_signed : {true, false}) {
    std::vector<double> xs = x;
    if (!is_signed)
      for (double& e : xs) e = e * e;
    Tensor in = Tensor::from_vector(xs, {n}, DType::f32);
    Tensor codes = Tensor::empty({n}, DType::u8), absmax = Tensor::empty({4}, DType::f32);
    Tensor out = Tensor::empty({n}, DType::f32);
    quantize_blockwise(in, codes, absmax, is_signed);
    dequantize_blockwise(codes, absmax, out, is_signed);
    std::vector<double> a = absmax.to_double_vector(), got = out.to_double_vector(), ref = in.to_double_vector();
    // The largest gap between neighbouring codes is in the top decade: 0.9/64 signed, 0.9/128 unsigned
    // (and -1 -> -(1 - 0.9/128) in the signed map), so the error is at most half of it times absmax.
    const double half_gap = is_signed ? 0.9 / 128 : 0.9 / 256;
    for (int64_t b = 0; b < 4; ++b) {
      double amax = 0;
      for (int64_t i = b * 256; i < std::min(n, (b + 1) * 256); ++i) amax = std::max(amax, std::fabs(ref[i]));
      EXPECT_EQ(a[b], amax) << "block " << b;
      for (int64_t i = b * 256; i < std::min(n, (b + 1) * 256); ++i)
        EXPECT_LE(std::fabs(got[i] - ref[i]), (half_gap + 1e-6) * amax) << "element " << i;  // + f32 rounding
    }
  }
}

TEST(QuantizeBlockwise, AllZeroBlockStaysZero) {
  Tensor codes = Tensor::empty({300}, DType::u8), absmax = Tensor::empty({2}, DType::f32);
  Tensor out = Tensor::full({300}, 7.0);
  quantize_blockwise(Tensor::zeros({300}), codes, absmax, true);
  dequantize_blockwise(codes, absmax, out, true);
  for (double v : out.to_double_vector()) EXPECT_EQ(v, 0.0);
}

struct Adam8State {
  Tensor mc, vc, am, av;
  explicit Adam8State(int64_t n)
      : mc(Tensor::zeros({n}, DType::u8)), vc(Tensor::zeros({n}, DType::u8)),
        am(Tensor::zeros({num_blocks_8bit(n)})), av(Tensor::zeros({num_blocks_8bit(n)})) {}
};

TEST(AdamW8bitStep, FirstStepFromZeroStateEqualsThe32BitStep) {
  // The parameter moves with the unquantized new m and v, and the zero state dequantizes exactly.
  const int64_t n = 700;
  AdamWHyper h{1e-2, 0.9, 0.999, 1e-8, 0.1, 1};
  Tensor p8 = Tensor::randn({n}, 1), p32 = clone(p8), g = Tensor::randn({n}, 2);
  Adam8State s(n);
  Tensor m = Tensor::zeros({n}), v = Tensor::zeros({n});
  adamw_8bit_step(p8, g, s.mc, s.vc, s.am, s.av, h);
  adamw_step(p32, g, m, v, h);
  EXPECT_EQ(p8.to_double_vector(), p32.to_double_vector());
}

TEST(AdamW8bitStep, SingleElementWithPositiveGradientsIsExact) {
  // One element per block: |m| and v are their own absmax, stored as the code 1.0 exactly.
  AdamWHyper h{0.05, 0.9, 0.99, 1e-8, 0.01, 1};
  Tensor p8 = Tensor::from_vector({0.5}, {1}), p32 = clone(p8);
  Adam8State s(1);
  Tensor m = Tensor::zeros({1}), v = Tensor::zeros({1});
  for (int t = 1; t <= 10; ++t) {
    h.step = t;
    Tensor g = Tensor::from_vector({0.1 * t}, {1});
    adamw_8bit_step(p8, g, s.mc, s.vc, s.am, s.av, h);
    adamw_step(p32, g, m, v, h);
    EXPECT_EQ(p8.to_double_vector(), p32.to_double_vector()) << "step " << t;
  }
}

TEST(AdamW8bitStep, SecondStepStaysCloseToThe32BitStep) {
  // After one step the state is quantized: the second update differs from the 32-bit one by the
  // quantization error of m and v. Bound: relative L2 gap of the update under 2%, no element off
  // by more than 0.2 lr (an Adam update is about lr in size). Measured: 0.53% and 0.05 lr.
  const int64_t n = 4096;
  const double lr = 1e-2;
  AdamWHyper h{lr, 0.9, 0.999, 1e-8, 0.0, 1};
  Tensor p8 = Tensor::randn({n}, 5), p32 = clone(p8);
  Adam8State s(n);
  Tensor m = Tensor::zeros({n}), v = Tensor::zeros({n});
  for (int t = 1; t <= 2; ++t) {
    h.step = t;
    Tensor g = Tensor::randn({n}, 100 + t);
    adamw_8bit_step(p8, g, s.mc, s.vc, s.am, s.av, h);
    adamw_step(p32, g, m, v, h);
  }
  std::vector<double> a = p8.to_double_vector(), b = p32.to_double_vector(), p0 = Tensor::randn({n}, 5).to_double_vector();
  double diff2 = 0, upd2 = 0, worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff2 += (a[i] - b[i]) * (a[i] - b[i]);
    upd2 += (b[i] - p0[i]) * (b[i] - p0[i]);
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  const double rel = std::sqrt(diff2 / upd2);
  RecordProperty("relative_update_gap", std::to_string(rel));
  RecordProperty("max_abs_gap", std::to_string(worst));
  EXPECT_LT(rel, 0.02);
  EXPECT_LT(worst, 0.2 * lr);
}

TEST(AdamW8bitStep, RejectsBadStateWithOpNameAndShapes) {
  Tensor p = Tensor::zeros({300}), g = Tensor::zeros({300});
  Adam8State s(300);
  try {
    adamw_8bit_step(p, g, Tensor::zeros({300}), s.vc, s.am, s.av, AdamWHyper{});
    FAIL() << "f32 m codes accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_8bit_step"));
    EXPECT_THAT(e.what(), HasSubstr("u8"));
  }
  try {
    adamw_8bit_step(p, g, s.mc, s.vc, Tensor::zeros({1}), s.av, AdamWHyper{});
    FAIL() << "too few absmax blocks accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_8bit_step"));
    EXPECT_THAT(e.what(), HasSubstr("(1,)"));
  }
  EXPECT_THROW(adamw_8bit_step(p, Tensor::zeros({300}, DType::f64), s.mc, s.vc, s.am, s.av, AdamWHyper{}), Error);
}

}  // namespace
}  // namespace shardlab::ops

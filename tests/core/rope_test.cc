// Rotary embedding kernels against a reference built literally from Hugging Face's code,
// y = x * cos(emb) + rotate_half(x) * sin(emb) with emb = cat(freqs, freqs), and the Llama-3
// frequency scaling against its formula evaluated independently here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/ops.h"
#include "tests/compare.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using shardlab::testing::Tolerance;
using shardlab::testing::tolerance;

using shardlab::testing::expect_all_close;

// Unscaled inverse frequencies: 1 / theta^(2i / D).
std::vector<double> plain_inv_freq(double theta, int64_t d) {
  std::vector<double> f;
  for (int64_t i = 0; i < d; i += 2) f.push_back(1.0 / std::pow(theta, static_cast<double>(i) / static_cast<double>(d)));
  return f;
}

// transformers' _compute_llama3_parameters, written with its torch.where structure.
double hf_llama3(double inv_freq, const ops::RopeScaling& s) {
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_ctx / s.low_freq_factor;
  const double high_freq_wavelen = old_ctx / s.high_freq_factor;
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  double inv_freq_llama = wavelen > low_freq_wavelen ? inv_freq / s.factor : inv_freq;
  const double smooth_factor = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const double smoothed = (1 - smooth_factor) * inv_freq_llama / s.factor + smooth_factor * inv_freq_llama;
  const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
  return is_medium ? smoothed : inv_freq_llama;
}

// x (B, H, T, D) as doubles in logical order; pos (B, T) row-major (rows repeated for (T,)).
std::vector<double> rope_reference(const std::vector<double>& x, const std::vector<double>& pos,
                                   const std::vector<double>& inv_freq, int64_t B, int64_t H, int64_t T, int64_t D) {
  std::vector<double> y(x.size());
  const int64_t half = D / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const double* xr = x.data() + ((b * H + h) * T + t) * D;
        double* yr = y.data() + ((b * H + h) * T + t) * D;
        for (int64_t k = 0; k < D; ++k) {
          const double emb = pos[b * T + t] * inv_freq[k % half];  // emb = cat(freqs, freqs)
          const double rot = k < half ? -xr[k + half] : xr[k - half];  // rotate_half = cat(-x2, x1)
          yr[k] = xr[k] * std::cos(emb) + rot * std::sin(emb);
        }
      }
  return y;
}

std::vector<double> repeat_rows(const std::vector<double>& row, int64_t times) {
  std::vector<double> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), row.begin(), row.end());
  return out;
}

TEST(Rope, InvFreqWithoutScaling) {
  ops::RopeConfig cfg{10000.0, std::nullopt};
  std::vector<double> f = ops::rope_inv_freq(cfg, 8);
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], 0.1, 1e-15);
  EXPECT_NEAR(f[2], 0.01, 1e-16);
  EXPECT_NEAR(f[3], 0.001, 1e-17);
}

TEST(Rope, Llama3InvFreqMatchesHuggingFaceFormulaInAllThreeRegimes) {
  // Llama 3.1's settings: theta 500000, head_dim 128, factor 8, low 1, high 4, 8192 context.
  ops::RopeScaling s{8.0, 1.0, 4.0, 8192};
  ops::RopeConfig cfg{500000.0, s};
  std::vector<double> got = ops::rope_inv_freq(cfg, 128);
  std::vector<double> plain = plain_inv_freq(500000.0, 128);
  ASSERT_EQ(got.size(), 64u);
  int regimes[3] = {0, 0, 0};  // high frequency (kept), medium (smoothed), low (divided)
  for (int i : {0, 10, 29, 31, 34, 40, 63}) {
    const double wavelen = 2 * std::numbers::pi / plain[i];
    const int regime = wavelen < 8192.0 / 4.0 ? 0 : (wavelen > 8192.0 ? 2 : 1);
    ++regimes[regime];
    EXPECT_NEAR(got[i], hf_llama3(plain[i], s), 1e-12 * plain[i]) << "index " << i;
    if (regime == 0) {
      EXPECT_DOUBLE_EQ(got[i], plain[i]) << "index " << i;
    } else if (regime == 2) {
      EXPECT_NEAR(got[i], plain[i] / 8.0, 1e-15 * plain[i]) << "index " << i;
    } else {
      EXPECT_TRUE(got[i] < plain[i] && got[i] > plain[i] / 8.0) << "index " << i;
    }
  }
  EXPECT_GT(regimes[0], 0);
  EXPECT_GT(regimes[1], 0);
  EXPECT_GT(regimes[2], 0);
}

TEST(Rope, ForwardMatchesRotateHalfReferenceWithSequencePositions) {
  const int64_t B = 2, H = 3, T = 5, D = 8;
  ops::RopeConfig cfg{10000.0, std::nullopt};
  Tensor x = Tensor::randn({B, H, T, D}, 51, DType::f64);
  Tensor pos = Tensor::from_ints({0, 1, 2, 7, 100}, {T}, DType::i64);
  Tensor y = ops::rope_fwd(x, pos, cfg);
  std::vector<double> ref = rope_reference(x.to_double_vector(), repeat_rows({0, 1, 2, 7, 100}, B),
                                           plain_inv_freq(10000.0, D), B, H, T, D);
  EXPECT_EQ(y.shape(), x.shape());
  expect_all_close(y.to_double_vector(), ref, tolerance("rope", DType::f64), "y");
}

TEST(Rope, ForwardWithBatchPositionsAndLlama3Scaling) {
  // D = 8, theta 10^4: wavelengths 2pi * (1, 10, 100, 1000); with a 1024 context and factors
  // (1, 4) they fall in the high, high, medium and low regimes.
  const int64_t B = 2, H = 2, T = 3, D = 8;
  ops::RopeScaling s{8.0, 1.0, 4.0, 1024};
  ops::RopeConfig cfg{10000.0, s};
  std::vector<double> inv;
  for (double f : plain_inv_freq(10000.0, D)) inv.push_back(hf_llama3(f, s));
  std::vector<double> pos_v = {0, 5, 9, 3, 4, 2000};
  Tensor pos = Tensor::from_ints({0, 5, 9, 3, 4, 2000}, {B, T}, DType::i32);
  Tensor x = Tensor::randn({B, H, T, D}, 52, DType::f64);
  Tensor y = ops::rope_fwd(x, pos, cfg);
  expect_all_close(y.to_double_vector(), rope_reference(x.to_double_vector(), pos_v, inv, B, H, T, D),
                   tolerance("rope", DType::f64), "y");
}

TEST(Rope, ForwardIn16BitAndF32WithinTolerance) {
  const int64_t B = 1, H = 4, T = 6, D = 16;
  ops::RopeConfig cfg{500000.0, std::nullopt};
  std::vector<double> pos_v = {0, 1, 2, 3, 4, 5};
  Tensor pos = Tensor::from_ints({0, 1, 2, 3, 4, 5}, {T});
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor x = ops::to_dtype(Tensor::randn({B, H, T, D}, 53, DType::f64), dt);
    Tensor y = ops::rope_fwd(x, pos, cfg);
    EXPECT_EQ(y.dtype(), dt);
    expect_all_close(y.to_double_vector(),
                     rope_reference(x.to_double_vector(), pos_v, plain_inv_freq(500000.0, D), B, H, T, D),
                     tolerance("rope", dt), dtype_name(dt));
  }
}

TEST(Rope, TransposedHeadsViewMatchesContiguous) {
  // Attention heads arrive as (B, T, H, D).transpose(1, 2).
  Tensor bthd = Tensor::randn({2, 5, 3, 8}, 54, DType::f32);
  Tensor x = ops::transpose(bthd, 1, 2);
  ASSERT_FALSE(x.is_contiguous());
  Tensor pos = Tensor::from_ints({3, 1, 4, 1, 5}, {5});
  ops::RopeConfig cfg{10000.0, std::nullopt};
  std::vector<double> a = ops::rope_fwd(x, pos, cfg).to_double_vector();
  std::vector<double> b = ops::rope_fwd(ops::contiguous(x), pos, cfg).to_double_vector();
  EXPECT_EQ(a, b);
}

TEST(Rope, BackwardIsTheTransposeOfForward) {
  // <rope(x), g> == <x, rope_bwd(g)>, and rope_bwd(rope(x)) == x (the rotation is orthogonal).
  ops::RopeConfig cfg{10000.0, ops::RopeScaling{4.0, 1.0, 4.0, 64}};
  Tensor pos = Tensor::from_ints({0, 17, 300, 2, 9, 1}, {2, 3});
  Tensor x = Tensor::randn({2, 2, 3, 8}, 55, DType::f64);
  Tensor g = Tensor::randn({2, 2, 3, 8}, 56, DType::f64);
  std::vector<double> fx = ops::rope_fwd(x, pos, cfg).to_double_vector(), gv = g.to_double_vector();
  std::vector<double> bg = ops::rope_bwd(g, pos, cfg).to_double_vector(), xv = x.to_double_vector();
  double lhs = 0.0, rhs = 0.0;
  for (size_t i = 0; i < xv.size(); ++i) {
    lhs += fx[i] * gv[i];
    rhs += xv[i] * bg[i];
  }
  EXPECT_NEAR(lhs, rhs, 1e-12 * (1.0 + std::abs(lhs)));
  expect_all_close(ops::rope_bwd(ops::rope_fwd(x, pos, cfg), pos, cfg).to_double_vector(), xv,
                   tolerance("rope", DType::f64), "round trip");
}

TEST(Rope, BadInputsNameTheOpAndShapes) {
  ops::RopeConfig cfg;
  try {
    ops::rope_fwd(Tensor::randn({1, 2, 3, 5}, 1), Tensor::arange(3), cfg);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(1, 2, 3, 5)"));
  }
  try {
    ops::rope_fwd(Tensor::randn({1, 2, 3, 4}, 1), Tensor::arange(4), cfg);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(1, 2, 3, 4)"));
    EXPECT_THAT(e.what(), HasSubstr("(4,)"));
  }
  try {
    ops::rope_bwd(Tensor::randn({2, 2, 3, 4}, 1), Tensor::zeros({3, 3}, DType::i64), cfg);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 3)"));
  }
  EXPECT_THROW(ops::rope_fwd(Tensor::randn({2, 3, 4}, 1), Tensor::arange(3), cfg), Error);
  EXPECT_THROW(ops::rope_fwd(Tensor::randn({1, 1, 3, 4}, 1), Tensor::zeros({3}, DType::f32), cfg), Error);
  EXPECT_THROW(ops::rope_inv_freq(ops::RopeConfig{10000.0, ops::RopeScaling{8.0, 4.0, 1.0, 8192}}, 8), Error);
}

}  // namespace
}  // namespace shardlab

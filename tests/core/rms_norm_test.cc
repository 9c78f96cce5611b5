// RMSNorm kernels against a naive f64 reference written from the definition
// y = x / sqrt(mean(x^2) + eps) * w, in every float dtype, plus layout, determinism and errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>

#include "core/ops.h"
#include "tests/compare.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using shardlab::testing::Tolerance;
using shardlab::testing::tolerance;

using shardlab::testing::expect_all_close;

struct RmsRef {
  std::vector<double> y, rstd, dx, dw;
};

// Naive f64 reference over rows of length d. Backward from the chain rule on
// y_k = x_k r w_k with r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / d.
RmsRef rms_reference(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& dy,
                     int64_t d, double eps) {
  const int64_t rows = static_cast<int64_t>(x.size()) / d;
  RmsRef ref;
  ref.y.resize(x.size());
  ref.dx.resize(x.size());
  ref.dw.assign(static_cast<size_t>(d), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += x[r * d + j] * x[r * d + j];
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    ref.rstd.push_back(rs);
    double dot = 0.0;  // sum_k dy_k w_k x_k
    for (int64_t k = 0; k < d; ++k) dot += dy.empty() ? 0.0 : dy[r * d + k] * w[k] * x[r * d + k];
    for (int64_t j = 0; j < d; ++j) {
      ref.y[r * d + j] = x[r * d + j] * rs * w[j];
      if (dy.empty()) continue;
      ref.dx[r * d + j] = dy[r * d + j] * w[j] * rs - dot * rs * rs * rs * x[r * d + j] / static_cast<double>(d);
      ref.dw[j] += dy[r * d + j] * x[r * d + j] * rs;
    }
  }
  return ref;
}

TEST(RmsNorm, ForwardMatchesReferenceInEveryFloatDtype) {
  const double eps = 1e-5;
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    Tensor x = ops::to_dtype(Tensor::randn({3, 5, 16}, 11, DType::f64), dt);
    Tensor w = ops::to_dtype(Tensor::randn({16}, 12, DType::f64, 1.0, 0.3), dt);
    ops::RmsNormOut out = ops::rms_norm_fwd(x, w, eps);
    // The reference sees the same (rounded) inputs the kernel saw.
    RmsRef ref = rms_reference(x.to_double_vector(), w.to_double_vector(), {}, 16, eps);
    EXPECT_EQ(out.y.shape(), x.shape());
    EXPECT_EQ(out.y.dtype(), dt);
    EXPECT_EQ(out.rstd.shape(), Shape({15}));
    EXPECT_EQ(out.rstd.dtype(), dt == DType::f64 ? DType::f64 : DType::f32);
    expect_all_close(out.y.to_double_vector(), ref.y, tolerance("rms_norm", dt), std::string("y ") + dtype_name(dt));
    expect_all_close(out.rstd.to_double_vector(), ref.rstd,
                     tolerance("rms_norm", dt == DType::f64 ? DType::f64 : DType::f32),
                     std::string("rstd ") + dtype_name(dt));
  }
}

TEST(RmsNorm, HandComputedRow) {
  // x = (3, 4): mean(x^2) = 12.5, eps 0 -> rstd = 1/sqrt(12.5); w = (1, 2).
  Tensor x = Tensor::from_vector({3.0, 4.0}, {1, 2}, DType::f64);
  Tensor w = Tensor::from_vector({1.0, 2.0}, {2}, DType::f64);
  ops::RmsNormOut out = ops::rms_norm_fwd(x, w, 0.0);
  const double r = 1.0 / std::sqrt(12.5);
  EXPECT_NEAR(out.rstd.to_double_vector()[0], r, 1e-15);
  EXPECT_NEAR(out.y.to_double_vector()[0], 3.0 * r, 1e-15);
  EXPECT_NEAR(out.y.to_double_vector()[1], 8.0 * r, 1e-15);
}

TEST(RmsNorm, NonContiguousInputMatchesReference) {
  Tensor base = Tensor::randn({8, 6}, 21, DType::f32);
  Tensor x = ops::transpose(base, 0, 1);  // (6, 8), rows strided
  ASSERT_FALSE(x.is_contiguous());
  Tensor w = Tensor::randn({8}, 22, DType::f32);
  ops::RmsNormOut out = ops::rms_norm_fwd(x, w, 1e-6);
  RmsRef ref = rms_reference(x.to_double_vector(), w.to_double_vector(), {}, 8, 1e-6);
  expect_all_close(out.y.to_double_vector(), ref.y, tolerance("rms_norm", DType::f32), "y");
}

TEST(RmsNorm, BackwardMatchesReferenceInEveryFloatDtype) {
  const double eps = 1e-6;
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    Tensor x = ops::to_dtype(Tensor::randn({7, 24}, 31, DType::f64), dt);
    Tensor w = ops::to_dtype(Tensor::randn({24}, 32, DType::f64, 1.0, 0.3), dt);
    Tensor dy = ops::to_dtype(Tensor::randn({7, 24}, 33, DType::f64), dt);
    ops::RmsNormOut out = ops::rms_norm_fwd(x, w, eps);
    ops::RmsNormGrads g = ops::rms_norm_bwd(dy, x, w, out.rstd);
    RmsRef ref = rms_reference(x.to_double_vector(), w.to_double_vector(), dy.to_double_vector(), 24, eps);
    EXPECT_EQ(g.dx.dtype(), dt);
    EXPECT_EQ(g.dweight.dtype(), dt);
    EXPECT_EQ(g.dweight.shape(), w.shape());
    expect_all_close(g.dx.to_double_vector(), ref.dx, tolerance("rms_norm", dt), std::string("dx ") + dtype_name(dt));
    expect_all_close(g.dweight.to_double_vector(), ref.dw, tolerance("rms_norm", dt),
                     std::string("dweight ") + dtype_name(dt));
  }
}

TEST(RmsNorm, WeightGradientIsIndependentOfThreadCount) {
  // Big enough to take the parallel path.
  Tensor x = Tensor::randn({301, 128}, 41, DType::f32);
  Tensor w = Tensor::randn({128}, 42, DType::f32);
  Tensor dy = Tensor::randn({301, 128}, 43, DType::f32);
  ops::RmsNormOut out = ops::rms_norm_fwd(x, w, 1e-5);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  Tensor dw1 = ops::rms_norm_bwd(dy, x, w, out.rstd).dweight;
  omp_set_num_threads(std::max(2, saved));
  Tensor dw2 = ops::rms_norm_bwd(dy, x, w, out.rstd).dweight;
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(dw1.raw_data(), dw2.raw_data(), static_cast<size_t>(dw1.nbytes())), 0);
}

TEST(RmsNorm, BadInputsNameTheOpAndShapes) {
  Tensor x = Tensor::randn({2, 4}, 1);
  try {
    ops::rms_norm_fwd(x, Tensor::randn({3}, 2), 1e-5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(2, 4)"));
    EXPECT_THAT(e.what(), HasSubstr("(3,)"));
  }
  try {
    ops::rms_norm_fwd(x, Tensor::randn({4}, 2, DType::f64), 1e-5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("f64"));
  }
  ops::RmsNormOut out = ops::rms_norm_fwd(x, Tensor::randn({4}, 2), 1e-5);
  try {
    ops::rms_norm_bwd(Tensor::randn({4, 2}, 3), x, Tensor::randn({4}, 2), out.rstd);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(4, 2)"));
  }
  EXPECT_THROW(ops::rms_norm_fwd(Tensor::ones({2, 4}, DType::i32), Tensor::ones({4}, DType::i32), 1e-5), Error);
}

}  // namespace
}  // namespace shardlab

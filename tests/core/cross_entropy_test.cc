// Cross-entropy kernels against a naive f64 reference (loss = log sum exp(x) - x[target],
// gradient = softmax - onehot), with ignore_index, every reduction, a 32000-word vocabulary,
// 16-bit logits and bad targets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/compare.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using ops::Reduction;
using shardlab::testing::Tolerance;
using shardlab::testing::tolerance;

using shardlab::testing::expect_all_close;

struct CeRef {
  std::vector<double> lse, row_loss, dlogits;  // dlogits for dloss = 1 and the given reduction
  double sum = 0.0;
  int64_t count = 0;
};

CeRef ce_reference(const std::vector<double>& x, const std::vector<int64_t>& t, int64_t v, int64_t ignore,
                   Reduction reduction) {
  const int64_t n = static_cast<int64_t>(t.size());
  CeRef ref;
  for (int64_t r = 0; r < n; ++r) {
    double m = x[r * v];
    for (int64_t j = 0; j < v; ++j) m = std::max(m, x[r * v + j]);
    double s = 0.0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(x[r * v + j] - m);
    ref.lse.push_back(m + std::log(s));
    const bool counted = t[r] != ignore;
    ref.row_loss.push_back(counted ? ref.lse[r] - x[r * v + t[r]] : 0.0);
    ref.sum += ref.row_loss[r];
    ref.count += counted;
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < v; ++j) {
      double g = 0.0;
      if (t[r] != ignore) {
        g = std::exp(x[r * v + j] - ref.lse[r]) - (j == t[r] ? 1.0 : 0.0);
        if (reduction == Reduction::mean) g /= static_cast<double>(ref.count);
      }
      ref.dlogits.push_back(g);
    }
  return ref;
}

TEST(CrossEntropy, AllReductionsWithIgnoredTargets) {
  const int64_t n = 6, v = 7;
  Tensor logits = Tensor::randn({n, v}, 71, DType::f64, 0.0, 2.0);
  const std::vector<int64_t> t = {3, -100, 0, 6, -100, 2};
  Tensor targets = Tensor::from_ints(t, {n}, DType::i64);
  const Tolerance tol = tolerance("cross_entropy", DType::f64);
  for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
    CeRef ref = ce_reference(logits.to_double_vector(), t, v, -100, red);
    ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, targets, -100, red);
    EXPECT_EQ(out.count, 4);
    EXPECT_EQ(out.loss.dtype(), DType::f64);
    expect_all_close(out.lse.to_double_vector(), ref.lse, tol, "lse");
    if (red == Reduction::none) {
      EXPECT_EQ(out.loss.shape(), Shape({n}));
      expect_all_close(out.loss.to_double_vector(), ref.row_loss, tol, "loss none");
    } else {
      EXPECT_EQ(out.loss.dim(), 0);
      const double want = red == Reduction::sum ? ref.sum : ref.sum / 4.0;
      EXPECT_NEAR(out.loss.item(), want, tol.atol + tol.rtol * std::abs(want));
    }
    Tensor dloss = red == Reduction::none ? Tensor::ones({n}, DType::f64) : Tensor::scalar(1.0, DType::f64);
    Tensor dl = ops::cross_entropy_bwd(dloss, logits, targets, out.lse, -100, red, out.count);
    EXPECT_EQ(dl.shape(), logits.shape());
    expect_all_close(dl.to_double_vector(), ref.dlogits, tol, "dlogits");
  }
}

TEST(CrossEntropy, NoneReductionScalesEachRowByItsOwnGradient) {
  Tensor logits = Tensor::randn({3, 4}, 72, DType::f64);
  const std::vector<int64_t> t = {1, 2, 3};
  Tensor targets = Tensor::from_ints(t, {3}, DType::i32);
  ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, targets, -100, Reduction::none);
  Tensor dl = ops::cross_entropy_bwd(Tensor::from_vector({2.0, 0.0, -0.5}, {3}, DType::f64), logits, targets,
                                     out.lse, -100, Reduction::none, out.count);
  CeRef ref = ce_reference(logits.to_double_vector(), t, 4, -100, Reduction::sum);
  const double scale[3] = {2.0, 0.0, -0.5};
  std::vector<double> want;
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 4; ++j) want.push_back(ref.dlogits[r * 4 + j] * scale[r]);
  expect_all_close(dl.to_double_vector(), want, tolerance("cross_entropy", DType::f64), "dlogits");
}

TEST(CrossEntropy, IgnoreIndexInsideTheVocabulary) {
  Tensor logits = Tensor::randn({4, 5}, 73, DType::f64);
  const std::vector<int64_t> t = {0, 4, 0, 2};
  CeRef ref = ce_reference(logits.to_double_vector(), t, 5, 0, Reduction::mean);
  ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, Tensor::from_ints(t, {4}), 0, Reduction::mean);
  EXPECT_EQ(out.count, 2);
  EXPECT_NEAR(out.loss.item(), ref.sum / 2.0, 1e-12);
}

TEST(CrossEntropy, EveryTargetIgnoredGivesNaNMeanAndZeroGradient) {
  Tensor logits = Tensor::randn({2, 3}, 74, DType::f32);
  Tensor targets = Tensor::from_ints({-100, -100}, {2});
  ops::CrossEntropyOut mean = ops::cross_entropy_fwd(logits, targets, -100, Reduction::mean);
  EXPECT_TRUE(std::isnan(mean.loss.item()));  // as torch: 0 / 0
  EXPECT_EQ(ops::cross_entropy_fwd(logits, targets, -100, Reduction::sum).loss.item(), 0.0);
  Tensor dl = ops::cross_entropy_bwd(Tensor::scalar(1.0), logits, targets, mean.lse, -100, Reduction::mean, 0);
  for (double g : dl.to_double_vector()) EXPECT_EQ(g, 0.0);
}

TEST(CrossEntropy, LargeVocabularyInF32And16Bit) {
  const int64_t n = 4, v = 32000;
  const std::vector<int64_t> t = {5, 31999, -100, 12345};
  Tensor targets = Tensor::from_ints(t, {n});
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Tensor logits = ops::to_dtype(Tensor::randn({n, v}, 75, DType::f64, 0.0, 3.0), dt);
    CeRef ref = ce_reference(logits.to_double_vector(), t, v, -100, Reduction::mean);
    ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, targets, -100, Reduction::mean);
    EXPECT_EQ(out.loss.dtype(), DType::f32);  // loss in f32 for 16-bit logits
    const Tolerance tol = tolerance("cross_entropy", dt);
    expect_all_close(out.lse.to_double_vector(), ref.lse, tol, std::string("lse ") + dtype_name(dt));
    const double want = ref.sum / 3.0;
    EXPECT_NEAR(out.loss.item(), want, tol.atol + tol.rtol * std::abs(want)) << dtype_name(dt);
    Tensor dl = ops::cross_entropy_bwd(Tensor::scalar(1.0), logits, targets, out.lse, -100, Reduction::mean, out.count);
    EXPECT_EQ(dl.dtype(), dt);
    expect_all_close(dl.to_double_vector(), ref.dlogits, tol, std::string("dlogits ") + dtype_name(dt));
  }
}

TEST(CrossEntropy, StridedLogitsMatchContiguous) {
  Tensor logits = ops::transpose(Tensor::randn({9, 5}, 76, DType::f32), 0, 1);  // (5, 9), column-major
  Tensor rows = ops::narrow(Tensor::randn({5, 20}, 77, DType::f32), 1, 3, 9);    // (5, 9), strided rows
  Tensor targets = Tensor::from_ints({0, 8, 3, -100, 4}, {5});
  for (const Tensor& x : {logits, rows}) {
    ASSERT_FALSE(x.is_contiguous());
    CeRef ref = ce_reference(x.to_double_vector(), {0, 8, 3, -100, 4}, 9, -100, Reduction::sum);
    ops::CrossEntropyOut out = ops::cross_entropy_fwd(x, targets, -100, Reduction::sum);
    EXPECT_NEAR(out.loss.item(), ref.sum, 1e-4 * std::abs(ref.sum));
    Tensor dl = ops::cross_entropy_bwd(Tensor::scalar(1.0), x, targets, out.lse, -100, Reduction::sum, out.count);
    expect_all_close(dl.to_double_vector(), ref.dlogits, tolerance("cross_entropy", DType::f32), "dlogits");
  }
}

TEST(CrossEntropy, BadInputsNameTheOpRowAndShapes) {
  Tensor logits = Tensor::randn({3, 10}, 78);
  try {
    ops::cross_entropy_fwd(logits, Tensor::from_ints({1, 10, 2}, {3}), -100, Reduction::mean);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("target 10 at row 1"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 10)"));
  }
  EXPECT_THROW(ops::cross_entropy_fwd(logits, Tensor::from_ints({1, -1, 2}, {3}), -100, Reduction::mean), Error);
  try {
    ops::cross_entropy_fwd(logits, Tensor::from_ints({1, 2}, {2}), -100, Reduction::mean);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 10)"));
    EXPECT_THAT(e.what(), HasSubstr("(2,)"));
  }
  EXPECT_THROW(ops::cross_entropy_fwd(Tensor::randn({3}, 1), Tensor::from_ints({1}, {1}), -100, Reduction::sum),
               Error);
  EXPECT_THROW(ops::cross_entropy_fwd(logits, Tensor::zeros({3}, DType::f32), -100, Reduction::sum), Error);
  ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, Tensor::from_ints({1, 2, 3}, {3}), -100, Reduction::none);
  try {
    ops::cross_entropy_bwd(Tensor::scalar(1.0), logits, Tensor::from_ints({1, 2, 3}, {3}), out.lse, -100,
                           Reduction::none, out.count);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 10)"));
  }
}

}  // namespace
}  // namespace shardlab

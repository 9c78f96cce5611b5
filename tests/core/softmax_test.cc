// softmax / log_softmax and their backward kernels against float64 references written here,
// along every dim, for every float dtype, on non-contiguous inputs and with huge logits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

const DType kFloatTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

// Visits every line along `dim` of a row-major `shape`: fn(list of flat indices of the line).
template <typename Fn>
void for_each_line(const Shape& shape, int64_t dim, Fn&& fn) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  for (size_t d = dim + 1; d < shape.size(); ++d) inner *= shape[d];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      std::vector<int64_t> idx;
      for (int64_t r = 0; r < shape[dim]; ++r) idx.push_back((o * shape[dim] + r) * inner + i);
      fn(idx);
    }
}

// Reference in f64 from the definition (exp(x) / sum exp(x), shifted by the line max only so that
// the large-logit cases stay finite in the reference itself).
std::vector<double> reference(const std::vector<double>& x, const Shape& shape, int64_t dim, bool log) {
  std::vector<double> y(x.size());
  for_each_line(shape, dim, [&](const std::vector<int64_t>& idx) {
    double mx = -INFINITY, total = 0;
    for (int64_t k : idx) mx = std::max(mx, x[k]);
    for (int64_t k : idx) total += std::exp(x[k] - mx);
    for (int64_t k : idx) y[k] = log ? x[k] - mx - std::log(total) : std::exp(x[k] - mx) / total;
  });
  return y;
}

void expect_close(const Tensor& got, const std::vector<double>& want, DType dtype, const std::string& what) {
  const auto tol = tolerance("softmax", dtype);
  std::vector<double> g = got.to_double_vector();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], want[i], tol.atol + tol.rtol * std::abs(want[i])) << what << " element " << i;
}

TEST(Softmax, MatchesTheReferenceAlongEveryDimForEveryDtype) {
  for (DType dt : kFloatTypes) {
    Tensor x = Tensor::randn({3, 4, 5}, 3, dt, 0.0, 2.0);
    for (int64_t dim : {0, 1, 2, -1, -3}) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      std::string what = std::string(dtype_name(dt)) + " dim " + std::to_string(dim);
      Tensor y = ops::softmax(x, dim);
      EXPECT_EQ(y.shape(), x.shape());
      EXPECT_EQ(y.dtype(), dt);
      expect_close(y, reference(x.to_double_vector(), x.shape(), d, false), dt, "softmax " + what);
      expect_close(ops::log_softmax(x, dim), reference(x.to_double_vector(), x.shape(), d, true), dt,
                   "log_softmax " + what);
    }
  }
}

TEST(Softmax, LinesSumToOne) {
  Tensor x = Tensor::randn({6, 300}, 5, DType::f32, 0.0, 4.0);
  for (int64_t dim : {0, 1}) {
    std::vector<double> totals = ops::sum(ops::softmax(x, dim), {dim}).to_double_vector();
    for (double t : totals) EXPECT_NEAR(t, 1.0, tolerance("softmax", DType::f32).atol);
  }
}

TEST(Softmax, NonContiguousInput) {
  Tensor base = Tensor::randn({5, 4, 3}, 8, DType::f64);
  Tensor x = ops::permute(base, {2, 0, 1});  // (3, 5, 4), strided
  ASSERT_FALSE(x.is_contiguous());
  for (int64_t d = 0; d < 3; ++d) {
    expect_close(ops::softmax(x, d), reference(x.to_double_vector(), x.shape(), d, false), DType::f64, "softmax");
    expect_close(ops::log_softmax(x, d), reference(x.to_double_vector(), x.shape(), d, true), DType::f64, "log");
  }
}

TEST(Softmax, LargeLogitsStayFinite) {
  // exp(1000) overflows every float type; subtracting the line max makes this softmax([0, 1, 2]).
  // (bf16 cannot hold 1001 next to 1000, so it gets logits 8 apart, where its spacing is 8.)
  for (DType dt : kFloatTypes) {
    const double step = dt == DType::bf16 ? 8.0 : 1.0;
    Tensor x = Tensor::from_vector({1000, 1000 + step, 1000 + 2 * step, -1000, -1000 - step, -1000 - 2 * step},
                                   {2, 3}, dt);
    const double e1 = std::exp(step), e2 = std::exp(2 * step), z = 1 + e1 + e2, lz = std::log(z);
    expect_close(ops::softmax(x, 1), {1 / z, e1 / z, e2 / z, e2 / z, e1 / z, 1 / z}, dt,
                 std::string("softmax ") + dtype_name(dt));
    expect_close(ops::log_softmax(x, 1), {-lz, step - lz, 2 * step - lz, 2 * step - lz, step - lz, -lz}, dt,
                 std::string("log_softmax ") + dtype_name(dt));
  }
}

TEST(Softmax, LongLinesUseThreads) {
  Tensor x = Tensor::randn({40, 3000}, 9, DType::f32);
  expect_close(ops::softmax(x, 1), reference(x.to_double_vector(), x.shape(), 1, false), DType::f32, "rows");
  expect_close(ops::log_softmax(x, 0), reference(x.to_double_vector(), x.shape(), 0, true), DType::f32, "cols");
}

TEST(Softmax, BackwardKernelsMatchTheChainRule) {
  // dx_i = sum_j dy_j dy_j/dx_i, with the Jacobians written out: softmax d y_j / d x_i =
  // y_j (delta_ij - y_i), log_softmax d y_j / d x_i = delta_ij - softmax(x)_i.
  for (DType dt : kFloatTypes) {
    Tensor x = Tensor::randn({3, 4}, 12, dt);
    Tensor dy = Tensor::randn({3, 4}, 13, dt);
    for (int64_t dim : {0, 1}) {
      const std::vector<double> xv = x.to_double_vector(), g = dy.to_double_vector();
      const std::vector<double> s = reference(xv, x.shape(), dim, false);
      std::vector<double> want_soft(xv.size()), want_log(xv.size());
      for_each_line(x.shape(), dim, [&](const std::vector<int64_t>& idx) {
        for (int64_t i : idx) {
          double a = 0, b = 0;
          for (int64_t j : idx) {
            a += g[j] * s[j] * ((i == j) - s[i]);
            b += g[j] * ((i == j) - s[i]);
          }
          want_soft[i] = a;
          want_log[i] = b;
        }
      });
      std::string what = std::string(dtype_name(dt)) + " dim " + std::to_string(dim);
      expect_close(ops::softmax_backward(dy, ops::softmax(x, dim), dim), want_soft, dt, "softmax_backward " + what);
      expect_close(ops::log_softmax_backward(dy, ops::log_softmax(x, dim), dim), want_log, dt,
                   "log_softmax_backward " + what);
    }
  }
}

TEST(Softmax, BadInputNamesTheOpAndShape) {
  auto message = [](auto&& fn) {
    try { fn(); } catch (const Error& e) { return std::string(e.what()); }
    return std::string("no error");
  };
  Tensor x = Tensor::zeros({2, 3}, DType::f32);
  EXPECT_THAT(message([&] { ops::softmax(x, 2); }), AllOf(HasSubstr("softmax"), HasSubstr("(2, 3)")));
  EXPECT_THAT(message([&] { ops::log_softmax(Tensor::zeros({2}, DType::i64), 0); }),
              AllOf(HasSubstr("log_softmax"), HasSubstr("i64")));
  EXPECT_THAT(message([&] { ops::softmax_backward(Tensor::zeros({3, 2}), x, 1); }),
              AllOf(HasSubstr("softmax_backward"), HasSubstr("(3, 2)"), HasSubstr("(2, 3)")));
  EXPECT_THAT(message([&] { ops::log_softmax_backward(Tensor::zeros({2, 3}, DType::f64), x, 1); }),
              AllOf(HasSubstr("log_softmax_backward"), HasSubstr("f64"), HasSubstr("f32")));
}

}  // namespace
}  // namespace shardlab

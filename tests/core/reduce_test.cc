// Reductions (sum, mean, max, argmax, sum_to) against a naive float64 reference written here:
// every dtype, several dim sets, keepdim, negative dims, non-contiguous inputs and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

const DType kFloatTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

enum class RefOp { sum, mean, max, argmax };

// Naive f64 reference: walks every input element (logical order) and folds it into the output
// element obtained by dropping the reduced dims. Returns the values in logical output order.
std::vector<double> reference(const Tensor& t, const std::vector<bool>& reduced, RefOp op) {
  const std::vector<double> x = t.to_double_vector();
  const Shape& shape = t.shape();
  const int64_t nd = t.dim();
  int64_t out_n = 1, count = 1;
  for (int64_t d = 0; d < nd; ++d) (reduced[d] ? count : out_n) *= shape[d];
  std::vector<double> acc(out_n, op == RefOp::sum || op == RefOp::mean ? 0.0 : -INFINITY), arg(out_n, -1);
  for (int64_t lin = 0; lin < static_cast<int64_t>(x.size()); ++lin) {
    int64_t rem = lin, out = 0, out_stride = 1, pos = 0, pos_stride = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      const int64_t idx = rem % shape[d];
      rem /= shape[d];
      if (reduced[d]) { pos += idx * pos_stride; pos_stride *= shape[d]; }
      else { out += idx * out_stride; out_stride *= shape[d]; }
    }
    if (op == RefOp::sum || op == RefOp::mean) acc[out] += x[lin];
    else if (x[lin] > acc[out]) { acc[out] = x[lin]; arg[out] = static_cast<double>(pos); }
  }
  if (op == RefOp::mean) for (double& v : acc) v /= static_cast<double>(count);
  return op == RefOp::argmax ? arg : acc;
}

std::vector<bool> mask_of(int64_t nd, std::vector<int64_t> dims) {
  std::vector<bool> m(nd, dims.empty());
  for (int64_t d : dims) m[d < 0 ? d + nd : d] = true;
  return m;
}

Shape expected_shape(const Shape& in, const std::vector<bool>& mask, bool keepdim) {
  Shape s;
  for (size_t d = 0; d < in.size(); ++d)
    if (!mask[d]) s.push_back(in[d]);
    else if (keepdim) s.push_back(1);
  return s;
}

void expect_close(const Tensor& got, const std::vector<double>& want, DType dtype, const std::string& what) {
  const auto tol = tolerance("reduce", dtype);
  std::vector<double> g = got.to_double_vector();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], want[i], tol.atol + tol.rtol * std::abs(want[i])) << what << " element " << i;
}

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {2}, {-1}, {0, 2}, {1, -1}, {-3, 1}, {0, 1, 2}};

TEST(Reduce, SumAndMeanMatchTheReferenceForEveryDtypeAndDimSet) {
  for (DType dt : kFloatTypes) {
    Tensor x = Tensor::randn({3, 4, 5}, 7, dt);
    for (const auto& dims : kDimSets) {
      for (bool keepdim : {false, true}) {
        auto mask = mask_of(3, dims);
        std::string what = std::string(dtype_name(dt)) + " dims=" + shape_str(dims) + (keepdim ? " keepdim" : "");
        Tensor s = ops::sum(x, dims, keepdim);
        EXPECT_EQ(s.shape(), expected_shape(x.shape(), mask, keepdim)) << what;
        EXPECT_EQ(s.dtype(), dt);
        expect_close(s, reference(x, mask, RefOp::sum), dt, "sum " + what);
        Tensor m = ops::mean(x, dims, keepdim);
        EXPECT_EQ(m.shape(), s.shape()) << what;
        expect_close(m, reference(x, mask, RefOp::mean), dt, "mean " + what);
      }
    }
  }
}

TEST(Reduce, NonContiguousInputs) {
  // A permuted view and a stepped slice: the kernels must read through the strides.
  Tensor base = Tensor::randn({5, 4, 6}, 11, DType::f32);
  Tensor perm = ops::permute(base, {2, 0, 1});         // (6, 5, 4)
  Tensor stepped = ops::slice(base, 2, 0, 6, 2);       // (5, 4, 3)
  for (const Tensor& x : {perm, stepped}) {
    ASSERT_FALSE(x.is_contiguous());
    for (const auto& dims : kDimSets) {
      auto mask = mask_of(3, dims);
      expect_close(ops::sum(x, dims), reference(x, mask, RefOp::sum), DType::f32, "sum " + shape_str(dims));
      expect_close(ops::mean(x, dims, true), reference(x, mask, RefOp::mean), DType::f32, "mean");
    }
    for (int64_t d = 0; d < 3; ++d) {
      auto mask = mask_of(3, {d});
      ops::MaxResult r = ops::max(x, d);
      expect_close(r.values, reference(x, mask, RefOp::max), DType::f32, "max");
      EXPECT_EQ(r.indices.to_double_vector(), reference(x, mask, RefOp::argmax));
    }
  }
}

TEST(Reduce, LargeRowsAndColumnsUseEveryKernelPath) {
  // One long row (split into partial sums), many columns (chunked column sums), a middle block.
  Tensor row = Tensor::randn({100003}, 3, DType::f32);
  expect_close(ops::sum(row), reference(row, {true}, RefOp::sum), DType::f32, "long row");
  Tensor few_rows = Tensor::randn({5, 40000}, 5, DType::f32);  // few long rows: split into partials
  expect_close(ops::sum(few_rows, {1}), reference(few_rows, {false, true}, RefOp::sum), DType::f32, "few rows");
  Tensor tall = Tensor::randn({2000, 3}, 6, DType::f32);  // few columns: rows split into segments
  expect_close(ops::sum(tall, {0}), reference(tall, {true, false}, RefOp::sum), DType::f32, "tall");
  expect_close(ops::mean(tall, {0}), reference(tall, {true, false}, RefOp::mean), DType::f32, "tall mean");
  Tensor cols = Tensor::randn({3, 7, 2500}, 4, DType::f32);
  for (const auto& dims : std::vector<std::vector<int64_t>>{{1}, {0}, {0, 1}, {2}}) {
    auto mask = mask_of(3, dims);
    expect_close(ops::sum(cols, dims), reference(cols, mask, RefOp::sum), DType::f32, "cols " + shape_str(dims));
    if (dims.size() == 1) {
      ops::MaxResult r = ops::max(cols, dims[0]);
      expect_close(r.values, reference(cols, mask, RefOp::max), DType::f32, "max cols");
      EXPECT_EQ(r.indices.to_double_vector(), reference(cols, mask, RefOp::argmax));
    }
  }
}

TEST(Reduce, ResultsDoNotDependOnTheThreadCount) {
  // NOTE [deterministic splits] in core/cpu/reduce.cc: every split depends on the shape only.
  Tensor a = Tensor::randn({3, 70000}, 31, DType::f32);
  Tensor b = Tensor::randn({5000, 40}, 32, DType::bf16);
  auto run = [&] {
    return std::vector<std::vector<double>>{ops::sum(a).to_double_vector(), ops::sum(a, {1}).to_double_vector(),
                                            ops::sum(b, {0}).to_double_vector(), ops::mean(b, {1}).to_double_vector()};
  };
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = run();
  omp_set_num_threads(4);
  auto four = run();
  omp_set_num_threads(before);
  EXPECT_EQ(one, four);
}

TEST(Reduce, F32SumsAccumulateInDouble) {
  // 1 + 2^24 ones: an f32 accumulator would stick at 2^24.
  Tensor x = Tensor::ones({(1 << 24) + 2}, DType::f32);
  EXPECT_EQ(ops::sum(x).item(), static_cast<double>((1 << 24) + 2));
}

TEST(Reduce, IntegerSumsAreExactAndI64) {
  Tensor x = Tensor::from_ints({1, 2, 3, 2000000000, 2000000000, 6}, {2, 3}, DType::i32);
  Tensor s = ops::sum(x, {1});
  EXPECT_EQ(s.dtype(), DType::i64);
  EXPECT_EQ(s.to_int_vector(), (std::vector<int64_t>{6, 4000000006}));
  EXPECT_EQ(ops::sum(x).to_int_vector(), (std::vector<int64_t>{4000000012}));
}

TEST(Reduce, ScalarsAndEmptyDims) {
  Tensor s = Tensor::scalar(2.5, DType::f64);
  EXPECT_EQ(ops::sum(s).item(), 2.5);
  EXPECT_EQ(ops::sum(s, {0}).dim(), 0);
  Tensor empty = Tensor::zeros({2, 0, 3}, DType::f32);
  Tensor z = ops::sum(empty, {1});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.to_double_vector(), std::vector<double>(6, 0.0));
}

TEST(Reduce, MaxValuesIndicesAndFirstMaxWinsTies) {
  // Hand-computed: row 0 = [1, 3, 3] -> 3 at 1; row 1 = [2, 2, 0] -> 2 at 0.
  Tensor x = Tensor::from_vector({1, 3, 3, 2, 2, 0}, {2, 3}, DType::f32);
  ops::MaxResult r = ops::max(x, 1);
  EXPECT_EQ(r.values.to_double_vector(), (std::vector<double>{3, 2}));
  EXPECT_EQ(r.indices.dtype(), DType::i64);
  EXPECT_EQ(r.indices.to_int_vector(), (std::vector<int64_t>{1, 0}));
  // Along dim 0 (columns [1,2], [3,2], [3,0]): maxima 2, 3, 3 at rows 1, 0, 0.
  ops::MaxResult c = ops::max(x, -2, true);
  EXPECT_EQ(c.values.shape(), (Shape{1, 3}));
  EXPECT_EQ(c.values.to_double_vector(), (std::vector<double>{2, 3, 3}));
  EXPECT_EQ(c.indices.to_int_vector(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(ops::argmax(x, 1).to_int_vector(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(ops::argmax(x, 0, true).shape(), (Shape{1, 3}));
}

TEST(Reduce, MaxEveryDtypeAndIntegers) {
  for (DType dt : kFloatTypes) {
    Tensor x = Tensor::randn({4, 3, 5}, 21, dt);
    for (int64_t d : {0, 1, 2, -1}) {
      auto mask = mask_of(3, {d});
      ops::MaxResult r = ops::max(x, d);
      expect_close(r.values, reference(x, mask, RefOp::max), dt, std::string("max ") + dtype_name(dt));
      EXPECT_EQ(r.indices.to_double_vector(), reference(x, mask, RefOp::argmax));
    }
  }
  Tensor i = Tensor::from_ints({-5, 7, 7, -1}, {4}, DType::i32);
  EXPECT_EQ(ops::max(i, 0).values.to_int_vector(), (std::vector<int64_t>{7}));
  EXPECT_EQ(ops::max(i, 0).values.dtype(), DType::i32);
  EXPECT_EQ(ops::argmax(i, 0).to_int_vector(), (std::vector<int64_t>{1}));
}

TEST(Reduce, MaxPropagatesNaN) {
  Tensor x = Tensor::from_vector({1, NAN, 3}, {3}, DType::f32);
  EXPECT_TRUE(std::isnan(ops::max(x, 0).values.item()));
  EXPECT_EQ(ops::argmax(x, 0).item(), 1);
}

TEST(Reduce, MaxBackwardScattersToTheIndices) {
  Tensor g = Tensor::from_vector({10, 20}, {2}, DType::f64);
  Tensor idx = Tensor::from_ints({2, 0}, {2});
  Tensor dx = ops::max_backward(g, idx, {2, 3}, 1, false);
  EXPECT_EQ(dx.to_double_vector(), (std::vector<double>{0, 0, 10, 20, 0, 0}));
  Tensor dx0 = ops::max_backward(ops::view(g, {1, 2}), ops::view(idx, {1, 2}), {3, 2}, 0, true);
  EXPECT_EQ(dx0.to_double_vector(), (std::vector<double>{0, 20, 0, 0, 10, 0}));
}

TEST(Reduce, SumToInvertsBroadcasting) {
  Tensor x = Tensor::randn({2, 3, 4}, 5, DType::f64);
  struct Case { Shape target; std::vector<int64_t> dims; };
  for (const Case& c : std::vector<Case>{{{3, 1}, {0, 2}}, {{4}, {0, 1}}, {{1, 3, 4}, {0}}, {{2, 1, 4}, {1}},
                                         {{}, {0, 1, 2}}, {{1, 1}, {0, 1, 2}}}) {
    Tensor s = ops::sum_to(x, c.target);
    EXPECT_EQ(s.shape(), c.target);
    expect_close(s, reference(x, mask_of(3, c.dims), RefOp::sum), DType::f64, "sum_to " + shape_str(c.target));
  }
  Tensor same = ops::sum_to(x, {2, 3, 4});
  EXPECT_FALSE(same.is_same(x));
  EXPECT_EQ(same.to_double_vector(), x.to_double_vector());
  // Non-contiguous gradients (e.g. an expanded one) reduce correctly too.
  Tensor e = ops::expand(Tensor::from_vector({1, 2}, {2, 1}, DType::f32), {3, 2, 4});
  EXPECT_EQ(ops::sum_to(e, {2, 1}).to_double_vector(), (std::vector<double>{12, 24}));
}

TEST(Reduce, BadInputNamesTheOpAndShape) {
  Tensor x = Tensor::zeros({2, 3}, DType::f32);
  auto message = [](auto&& fn) {
    try { fn(); } catch (const Error& e) { return std::string(e.what()); }
    return std::string("no error");
  };
  EXPECT_THAT(message([&] { ops::sum(x, {2}); }), AllOf(HasSubstr("sum"), HasSubstr("dim 2"), HasSubstr("(2, 3)")));
  EXPECT_THAT(message([&] { ops::sum(x, {1, -1}); }), AllOf(HasSubstr("sum"), HasSubstr("(2, 3)")));
  EXPECT_THAT(message([&] { ops::mean(Tensor::zeros({2}, DType::i32)); }), HasSubstr("mean"));
  EXPECT_THAT(message([&] { ops::max(x, 5); }), AllOf(HasSubstr("max"), HasSubstr("(2, 3)")));
  EXPECT_THAT(message([&] { ops::max(Tensor::zeros({2, 0}), 1); }), AllOf(HasSubstr("max"), HasSubstr("(2, 0)")));
  EXPECT_THAT(message([&] { ops::sum_to(x, {4}); }), AllOf(HasSubstr("sum_to"), HasSubstr("(2, 3)"), HasSubstr("(4,)")));
  EXPECT_THAT(message([&] { ops::sum_to(x, {1, 2, 3}); }), HasSubstr("sum_to"));
}

}  // namespace
}  // namespace shardlab

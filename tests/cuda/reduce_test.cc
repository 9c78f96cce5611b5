// CUDA sum, mean, max/argmax, max_backward and sum_of_squares against the CPU kernels: every dim
// set, keepdim, the row/column and split (long row, tall column) paths, non-contiguous inputs,
// first-index ties and NaN, integer sums, determinism, and errors that name the op.
// Skips without a GPU (written where none was visible: compiled, not yet run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using testing::expect_matches_cpu;
using testing::on_cuda;
using testing::Tolerance;
using ::testing::HasSubstr;

const std::vector<DType> kFloatTypes = {DType::f32, DType::bf16, DType::f16, DType::f64};

std::string name(const char* op, DType dt, const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  std::string s = std::string(op) + " " + dtype_name(dt) + " " + shape_str(shape) + " dims {";
  for (int64_t d : dims) s += std::to_string(d) + ",";
  return s + "} keepdim " + std::to_string(keepdim);
}

// Values with many exact ties: integers in [0, levels) as the given dtype.
Tensor tied_values(const Shape& shape, int levels, uint64_t seed, DType dtype) {
  std::vector<double> v = Tensor::rand(shape, seed, DType::f64, 0.0, levels).to_double_vector();
  for (double& x : v) x = std::floor(x);
  return Tensor::from_vector(v, shape, dtype);
}

template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& pieces) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing \"" << pieces.front() << "\"";
  } catch (const Error& e) {
    for (const std::string& p : pieces) EXPECT_THAT(e.what(), HasSubstr(p));
  }
}

TEST(CudaReduce, SumAndMeanOverEveryDimSetMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const Shape shape = {5, 37, 300};
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {1}, {2}, {-1}, {0, 2}, {0, 1}, {1, 2}, {2, 0, 1}};
  for (DType dt : kFloatTypes) {
    const Tensor x = Tensor::randn(shape, 1, dt);
    const Tensor xd = on_cuda(x);
    for (const auto& dims : dim_sets)
      for (bool keepdim : {false, true}) {
        expect_matches_cpu(ops::sum(xd, dims, keepdim), ops::sum(x, dims, keepdim), "reduce",
                           name("sum", dt, shape, dims, keepdim));
        expect_matches_cpu(ops::mean(xd, dims, keepdim), ops::mean(x, dims, keepdim), "reduce",
                           name("mean", dt, shape, dims, keepdim));
      }
  }
}

TEST(CudaReduce, NonContiguousInputsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = Tensor::randn({6, 50, 33}, 2, dt);
    const Tensor xt = ops::transpose(x, 0, 2);               // (33, 50, 6), strided
    const Tensor xtd = ops::transpose(on_cuda(x), 0, 2);
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {0, 2}, {}}) {
      expect_matches_cpu(ops::sum(xtd, dims, false), ops::sum(xt, dims, false), "reduce",
                         name("sum of transpose", dt, xt.shape(), dims, false));
      expect_matches_cpu(ops::mean(xtd, dims, true), ops::mean(xt, dims, true), "reduce",
                         name("mean of transpose", dt, xt.shape(), dims, true));
    }
    const int64_t dim = 1;
    const ops::MaxResult got = ops::max(xtd, dim, false), want = ops::max(xt, dim, false);
    expect_matches_cpu(got.values, want.values, Tolerance{0, 0}, "max of transpose");
    expect_matches_cpu(got.indices, want.indices, Tolerance{0, 0}, "argmax of transpose");
  }
}

TEST(CudaReduce, LongRowsTallColumnsAndWholeTensorsTakeTheSplitPaths) {
  SL_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<Case> cases = {
      {{3, 100001}, {1}},     // few long rows: split into chunks, then finished per row
      {{100001, 3}, {0}},     // a tall narrow column block: split into segments
      {{1000, 1001}, {}},     // everything: one long row
      {{20, 700}, {1}},       // rows longer than a warp's share: one block per row
      {{2, 5000, 300}, {1}},  // columns with segments and two outer blocks
  };
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    for (const Case& c : cases) {
      const Tensor x = Tensor::randn(c.shape, 3, dt);
      const Tensor xd = on_cuda(x);
      expect_matches_cpu(ops::sum(xd, c.dims), ops::sum(x, c.dims), "reduce", name("sum", dt, c.shape, c.dims, false));
      expect_matches_cpu(ops::mean(xd, c.dims), ops::mean(x, c.dims), "reduce",
                         name("mean", dt, c.shape, c.dims, false));
    }
  }
}

TEST(CudaReduce, SumsAreBitIdenticalAcrossRuns) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor xd = on_cuda(Tensor::randn({3, 200000}, 4, DType::f32));
  const Tensor cd = on_cuda(Tensor::randn({100000, 5}, 5, DType::bf16));
  EXPECT_EQ(ops::sum(xd, {1}).to_double_vector(), ops::sum(xd, {1}).to_double_vector());
  EXPECT_EQ(ops::sum(xd).to_double_vector(), ops::sum(xd).to_double_vector());
  EXPECT_EQ(ops::sum(cd, {0}).to_double_vector(), ops::sum(cd, {0}).to_double_vector());
  EXPECT_EQ(ops::sum_of_squares(xd), ops::sum_of_squares(xd));
}

TEST(CudaReduce, IntegerSumsAreExactInI64) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::i8}) {
    const Tensor x = tied_values({7, 1234}, 100, 6, dt);
    const Tensor xd = on_cuda(x);
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{}, {0}, {1}}) {
      const Tensor got = ops::sum(xd, dims);
      EXPECT_EQ(got.dtype(), DType::i64);
      expect_matches_cpu(got, ops::sum(x, dims), Tolerance{0, 0}, name("integer sum", dt, x.shape(), dims, false));
    }
  }
}

TEST(CudaReduce, EmptyAndScalarInputs) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor empty = Tensor::randn({4, 0}, 7, DType::f32);
  expect_matches_cpu(ops::sum(on_cuda(empty), {1}), ops::sum(empty, {1}), "reduce", "sum over an empty dim");
  const Tensor none = Tensor::randn({0, 3}, 7, DType::f32);
  expect_matches_cpu(ops::sum(on_cuda(none), {1}), ops::sum(none, {1}), "reduce", "sum with no rows");
  const Tensor s = Tensor::scalar(2.5, DType::f32);
  expect_matches_cpu(ops::sum(on_cuda(s)), ops::sum(s), "reduce", "sum of a scalar");
  expect_matches_cpu(ops::mean(on_cuda(s), {0}), ops::mean(s, {0}), "reduce", "mean of a scalar over dim 0");
}

TEST(CudaReduce, MaxAndArgmaxPickTheFirstOfTiedMaxima) {
  SL_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape shape;
    int64_t dim;
  };
  const std::vector<Case> cases = {
      {{7, 100}, 1},       // one warp per row
      {{7, 3000}, 1},      // one block per row
      {{300, 9}, 0},       // columns
      {{3, 5000, 4}, 1},   // columns split into segments: ties across segments
      {{2, 3, 4, 5}, -2},  // a middle dim of a 4-D tensor
  };
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64, DType::i32, DType::i64}) {
    for (const Case& c : cases) {
      const Tensor x = tied_values(c.shape, 5, 8, dt);
      const Tensor xd = on_cuda(x);
      for (bool keepdim : {false, true}) {
        const std::string what = name("max", dt, c.shape, {c.dim}, keepdim);
        const ops::MaxResult got = ops::max(xd, c.dim, keepdim), want = ops::max(x, c.dim, keepdim);
        expect_matches_cpu(got.values, want.values, Tolerance{0, 0}, what + " values");
        expect_matches_cpu(got.indices, want.indices, Tolerance{0, 0}, what + " indices");
        expect_matches_cpu(ops::argmax(xd, c.dim, keepdim), ops::argmax(x, c.dim, keepdim), Tolerance{0, 0},
                           what + " argmax");
      }
    }
  }
}

TEST(CudaReduce, MaxIsNaNAtTheFirstNaN) {
  SL_SKIP_WITHOUT_CUDA();
  const double nan = std::nan("");
  const Tensor x = Tensor::from_vector({1, nan, 3, nan, 9, 2, 9, 0, -5, -5, -7, 0}, {3, 4}, DType::f32);
  const ops::MaxResult got = ops::max(on_cuda(x), 1);
  EXPECT_EQ(got.indices.to_int_vector(), (std::vector<int64_t>{1, 0, 3}));  // NaN, first 9, first 0
  const std::vector<double> values = got.values.to_double_vector();
  EXPECT_TRUE(std::isnan(values[0]));
  EXPECT_EQ(values[1], 9.0);
  EXPECT_EQ(values[2], 0.0);
  EXPECT_EQ(ops::argmax(on_cuda(x), 0).to_int_vector(), ops::argmax(x, 0).to_int_vector());
}

TEST(CudaReduce, MaxBackwardScattersIntoZeros) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    const Tensor x = Tensor::randn({4, 37, 6}, 9, dt);
    for (int64_t dim : {0, 1, 2})
      for (bool keepdim : {false, true}) {
        const ops::MaxResult m = ops::max(x, dim, keepdim);
        const Tensor g = Tensor::randn(m.values.shape(), 10, dt);
        expect_matches_cpu(ops::max_backward(on_cuda(g), on_cuda(m.indices), x.shape(), dim, keepdim),
                           ops::max_backward(g, m.indices, x.shape(), dim, keepdim), Tolerance{0, 0},
                           name("max_backward", dt, x.shape(), {dim}, keepdim));
      }
  }
}

TEST(CudaReduce, SumOfSquaresMatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : kFloatTypes) {
    for (const Shape& shape : std::vector<Shape>{{1}, {3, 5}, {1000, 999}, {0}}) {
      const Tensor x = Tensor::randn(shape, 11, dt);
      const double want = ops::sum_of_squares(x), got = ops::sum_of_squares(on_cuda(x));
      EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, want)) << dtype_name(dt) << " " << shape_str(shape);
    }
    const Tensor x = Tensor::randn({40, 30}, 12, dt);  // strided view
    EXPECT_NEAR(ops::sum_of_squares(ops::transpose(on_cuda(x), 0, 1)), ops::sum_of_squares(x), 1e-9)
        << dtype_name(dt) << " transpose";
  }
}

TEST(CudaReduce, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor xd = on_cuda(Tensor::randn({3, 4}, 13, DType::f32));
  expect_error([&] { ops::sum(xd, {2}); }, {"sum: dim 2 is out of range", "(3, 4)"});
  expect_error([&] { ops::mean(xd, {0, -2}); }, {"mean: dim -2 appears more than once"});
  expect_error([&] { ops::mean(on_cuda(Tensor::from_ints({1, 2}, {2}, DType::i32))); }, {"mean", "floating"});
  expect_error([&] { ops::max(on_cuda(Tensor::randn({3, 0}, 1)), 1); }, {"max: cannot reduce over dim 1 of size 0"});
  const Tensor bad_idx = on_cuda(Tensor::from_ints({0, 4, 1}, {3}, DType::i64));
  expect_error([&] { ops::max_backward(on_cuda(Tensor::randn({3}, 1)), bad_idx, {3, 4}, 1, false); },
               {"max_backward: index 4 is out of range for dim 1 of size 4"});
  expect_error([&] { ops::max_backward(xd, Tensor::from_ints({0, 0, 0, 0}, {4}, DType::i64), {3, 4}, 0, false); },
               {"max_backward", "device mismatch"});
}

}  // namespace
}  // namespace shardlab

// CUDA softmax, log_softmax and their backward kernels against the CPU: last-dim rows on the warp
// and block paths (lengths that are not multiples of either), other dims, non-contiguous inputs,
// rows masked with -inf, large logits, and errors that name the op.
// Skips without a GPU (written where none was visible: compiled, not yet run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using testing::expect_matches_cpu;
using testing::on_cuda;
using ::testing::HasSubstr;

std::string name(const char* op, DType dt, const Shape& shape, int64_t dim) {
  return std::string(op) + " " + dtype_name(dt) + " " + shape_str(shape) + " dim " + std::to_string(dim);
}

// Forward and backward of both ops on (x, dy), CPU against CUDA (x and dy given as CPU tensors
// and as their CUDA counterparts, which may be non-contiguous views).
void check_all(const Tensor& x, const Tensor& xd, const Tensor& dy, const Tensor& dyd, int64_t dim) {
  const DType dt = x.dtype();
  const Tensor y = ops::softmax(x, dim), ly = ops::log_softmax(x, dim);
  expect_matches_cpu(ops::softmax(xd, dim), y, "softmax", name("softmax", dt, x.shape(), dim));
  expect_matches_cpu(ops::log_softmax(xd, dim), ly, "softmax", name("log_softmax", dt, x.shape(), dim));
  // The backward kernels get the CPU outputs (the same y on both sides).
  expect_matches_cpu(ops::softmax_backward(dyd, on_cuda(y), dim), ops::softmax_backward(dy, y, dim), "softmax",
                     name("softmax_backward", dt, x.shape(), dim));
  expect_matches_cpu(ops::log_softmax_backward(dyd, on_cuda(ly), dim), ops::log_softmax_backward(dy, ly, dim),
                     "softmax", name("log_softmax_backward", dt, x.shape(), dim));
}

TEST(CudaSoftmax, LastDimRowsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  // Lengths around the warp path (<= 1024) and the block path (> 1024), none a multiple of 32.
  for (int64_t R : {1, 7, 33, 1000, 1025, 5003}) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
      const Shape shape = {13, R};
      const Tensor x = Tensor::randn(shape, 1, dt, 0.0, 3.0), dy = Tensor::randn(shape, 2, dt);
      check_all(x, on_cuda(x), dy, on_cuda(dy), -1);
    }
  }
}

TEST(CudaSoftmax, OtherDimsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16}) {
    const Shape shape = {4, 33, 6};
    const Tensor x = Tensor::randn(shape, 3, dt, 0.0, 2.0), dy = Tensor::randn(shape, 4, dt);
    for (int64_t dim : {0, 1, -1}) check_all(x, on_cuda(x), dy, on_cuda(dy), dim);
  }
  const Tensor s = Tensor::scalar(1.5, DType::f32);  // a scalar is one line of one element
  check_all(s, on_cuda(s), s, on_cuda(s), 0);
}

TEST(CudaSoftmax, NonContiguousInputsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = Tensor::randn({40, 3, 50}, 5, dt), dy = Tensor::randn({40, 3, 50}, 6, dt);
    const Tensor xt = ops::transpose(x, 0, 2), dyt = ops::transpose(dy, 0, 2);  // (50, 3, 40)
    const Tensor xtd = ops::transpose(on_cuda(x), 0, 2), dytd = ops::transpose(on_cuda(dy), 0, 2);
    for (int64_t dim : {0, 2}) check_all(xt, xtd, dyt, dytd, dim);
  }
}

TEST(CudaSoftmax, MaskedRowsAndLargeLogitsStayFinite) {
  SL_SKIP_WITHOUT_CUDA();
  // A causal-style mask: row r keeps its first r + 1 entries (the -inf ones come first in some
  // rows so that a thread may see only -inf before a finite value).
  const int64_t rows = 40, cols = 2000;
  std::vector<double> v = Tensor::randn({rows, cols}, 7, DType::f64, 0.0, 4.0).to_double_vector();
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const bool masked = r % 2 == 0 ? c > r * 50 : c < cols - 1 - r * 50;
      if (masked) v[r * cols + c] = -inf;
    }
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = Tensor::from_vector(v, {rows, cols}, dt);
    expect_matches_cpu(ops::softmax(on_cuda(x), 1), ops::softmax(x, 1), "softmax", "masked softmax");
    // log_softmax is -inf at masked entries on both sides; compare through exp() (on the CPU).
    const Tensor got = ops::log_softmax(on_cuda(x), 1).to(Device::cpu());
    testing::expect_all_close(ops::exp(got).to_double_vector(), ops::exp(ops::log_softmax(x, 1)).to_double_vector(),
                              testing::tolerance("softmax", dt), "masked log_softmax");
  }
  const Tensor big = Tensor::randn({5, 3000}, 8, DType::f32, 0.0, 1000.0);
  expect_matches_cpu(ops::softmax(on_cuda(big), 1), ops::softmax(big, 1), "softmax", "large logits");
  expect_matches_cpu(ops::log_softmax(on_cuda(big), 1), ops::log_softmax(big, 1), "softmax", "large logits log");
}

// A +inf in a line makes that line NaN, as on the CPU (exp(inf - inf)), along the last dim (row
// kernels) and along a middle dim (one thread per line: the kernel that once summed 1 instead).
TEST(CudaSoftmax, PlusInfinityMakesItsLineNaNAsOnTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  std::vector<double> v = Tensor::randn({4, 6, 5}, 9, DType::f64).to_double_vector();
  v[1 * 30 + 2 * 5 + 3] = std::numeric_limits<double>::infinity();
  const Tensor x = Tensor::from_vector(v, {4, 6, 5}, DType::f32);
  for (int64_t dim : {1, 2})
    for (bool log : {false, true}) {
      const Tensor want = log ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
      const Tensor got = (log ? ops::log_softmax(on_cuda(x), dim) : ops::softmax(on_cuda(x), dim)).to(Device::cpu());
      const std::vector<double> a = got.to_double_vector(), b = want.to_double_vector();
      int nans = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(std::isnan(a[i]), std::isnan(b[i])) << "dim " << dim << (log ? " log" : "") << " at " << i;
        nans += std::isnan(b[i]);
        if (!std::isnan(b[i]) && std::isfinite(b[i])) EXPECT_NEAR(a[i], b[i], 1e-5) << "dim " << dim << " at " << i;
      }
      EXPECT_EQ(nans, dim == 1 ? 6 : 5) << "the CPU makes exactly the +inf's line NaN";
    }
}

TEST(CudaSoftmax, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor xd = on_cuda(Tensor::randn({3, 4}, 9, DType::f32));
  try {
    ops::softmax(xd, 2);
    ADD_FAILURE() << "softmax with dim 2 of a 2-D tensor did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("softmax: dim 2 is out of range"));
  }
  try {
    ops::softmax_backward(xd, on_cuda(Tensor::randn({3, 4}, 9, DType::bf16)), 1);
    ADD_FAILURE() << "mixed dtypes did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("softmax_backward: dtype mismatch"));
  }
  try {
    ops::log_softmax_backward(xd, Tensor::randn({3, 4}, 9, DType::f32), 1);
    ADD_FAILURE() << "mixed devices did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("log_softmax_backward: device mismatch"));
  }
}

}  // namespace
}  // namespace shardlab

// nf4_linear: the tiled dequantize-and-multiply against naive f64 products with the dequantized
// weight (forward and input gradient, several tiles, blocks straddling rows), 16-bit inputs against
// matmul with the weight dequantized to that dtype, the ledger's workspace bound, the frozen weight,
// and the float64 gradcheck the op registry asks for.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "autograd/nf4.h"
#include "core/memory_ledger.h"
#include "tests/autograd/gradcheck_registry.h"
#include "tests/compare.h"

namespace shardlab::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// y[m, n] = sum_k x[m, k] w[n, k] in f64 from flat row-major vectors.
std::vector<double> naive_xwt(const std::vector<double>& x, const std::vector<double>& w, int64_t M, int64_t K,
                              int64_t N) {
  std::vector<double> y(M * N, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) y[m * N + n] += x[m * K + k] * w[n * K + k];
  return y;
}

// dx[m, k] = sum_n dy[m, n] w[n, k].
std::vector<double> naive_dyw(const std::vector<double>& dy, const std::vector<double>& w, int64_t M, int64_t K,
                              int64_t N) {
  std::vector<double> dx(M * K, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) dx[m * K + k] += dy[m * N + n] * w[n * K + k];
  return dx;
}

TEST(Nf4Linear, ForwardAndInputGradientMatchNaiveProductsOverManyTiles) {
  // (N, K) = (1000, 300): 300 000 elements, more than one 2^18-element tile, and K = 300 is not a
  // multiple of 64, so absmax blocks straddle rows and tiles.
  const int64_t M = 6, K = 300, N = 1000;
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({N, K}, 11, DType::f32, 0.0, 0.02));
  const std::vector<double> wd = ops::nf4_dequantize(w, DType::f64).to_double_vector();
  const Tensor x = Tensor::randn({2, 3, K}, 12);
  const Tensor y = ops::nf4_linear(x, w);
  ASSERT_EQ(y.shape(), (Shape{2, 3, N}));
  expect_all_close(y.to_double_vector(), naive_xwt(x.to_double_vector(), wd, M, K, N), tolerance("matmul", DType::f32),
                   "nf4_linear forward");
  const Tensor dy = Tensor::randn({2, 3, N}, 13);
  const Tensor dx = ops::nf4_linear_backward_input(dy, w);
  ASSERT_EQ(dx.shape(), x.shape());
  expect_all_close(dx.to_double_vector(), naive_dyw(dy.to_double_vector(), wd, M, K, N),
                   tolerance("matmul", DType::f32), "nf4_linear input gradient");
}

TEST(Nf4Linear, SixteenBitInputsEqualMatmulWithTheWeightDequantizedToTheirDtype) {
  const int64_t K = 192, N = 80;
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({N, K}, 21, DType::f32, 0.0, 0.05));
  for (DType dt : {DType::bf16, DType::f16}) {
    const Tensor x = Tensor::randn({5, K}, 22, dt);
    const Tensor want = ops::matmul(x, ops::transpose(ops::nf4_dequantize(w, dt), 0, 1));
    const Tensor got = ops::nf4_linear(x, w);
    ASSERT_EQ(got.dtype(), dt);
    // The same rounded operands and f32 accumulation: only the summation order may differ.
    expect_all_close(got.to_double_vector(), want.to_double_vector(), tolerance("matmul", dt), dtype_name(dt));
  }
}

TEST(Nf4Linear, AutogradGivesTheInputGradientAndNoWeightGradient) {
  const int64_t K = 128, N = 48;
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({N, K}, 31));
  const Tensor x = Tensor::randn({4, K}, 32).set_requires_grad(true);
  backward(sum(nf4_linear(x, w)));
  // d sum(x W^T) / dx[m, k] = sum_n W[n, k].
  const std::vector<double> wd = ops::nf4_dequantize(w, DType::f64).to_double_vector();
  std::vector<double> want(4 * K, 0.0);
  for (int64_t m = 0; m < 4; ++m)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) want[m * K + k] += wd[n * K + k];
  expect_all_close(x.grad().to_double_vector(), want, tolerance("matmul", DType::f32), "dx");
  EXPECT_FALSE(w.packed.requires_grad());
}

TEST(Nf4Linear, AskingForAWeightGradientIsAnError) {
  ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({8, 64}, 41));
  w.nested_absmax.set_requires_grad(true);
  try {
    nf4_linear(Tensor::randn({2, 64}, 42), w);
    FAIL() << "a trainable NF4 weight was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_linear"), HasSubstr("frozen"), HasSubstr("(8, 64)")));
  }
}

TEST(Nf4Linear, WorkspaceStaysATileNotTheWholeWeight) {
  // (4096, 256): the dequantized f32 weight would be 4 MiB; the kernel holds one 1 MiB tile, the
  // decoded absmax (64 KiB) and nothing else of the weight's size.
  const int64_t K = 256, N = 4096;
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({N, K}, 51));
  const Tensor x = Tensor::randn({3, K}, 52);
  MemoryLedger& ledger = MemoryLedger::instance();
  const int64_t before = ledger.snapshot(Device::cpu())[MemTag::workspace].live;
  ledger.reset_peaks();
  const Tensor y = ops::nf4_linear(x, w);
  const Tensor dx = ops::nf4_linear_backward_input(y, w);
  const int64_t peak = ledger.snapshot(Device::cpu())[MemTag::workspace].peak - before;
  const int64_t full = N * K * 4;
  EXPECT_GT(peak, 0) << "the tile is tagged workspace";
  EXPECT_LE(peak, (int64_t(1) << 20) + (N * K / 64) * 4) << "workspace peak " << peak << " bytes";
  EXPECT_LT(peak * 3, full);
}

TEST(Nf4Linear, BadInputsNameTheOpAndShapes) {
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({8, 64}, 61));
  try {
    ops::nf4_linear(Tensor::randn({2, 63}, 62), w);
    FAIL() << "wrong in_features accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_linear"), HasSubstr("(2, 63)"), HasSubstr("(8, 64)")));
  }
  try {
    ops::nf4_linear(Tensor::zeros({2, 64}, DType::i32), w);
    FAIL() << "integer input accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_linear"), HasSubstr("i32"), HasSubstr("(2, 64)")));
  }
  try {
    ops::nf4_linear_backward_input(Tensor::randn({2, 9}, 63), w);
    FAIL() << "wrong out_features accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_linear_backward_input"), HasSubstr("(2, 9)"), HasSubstr("(8, 64)")));
  }
  const ops::Nf4Tensor flat = ops::nf4_quantize(Tensor::randn({128}, 64));
  try {
    ops::nf4_linear(Tensor::randn({2, 128}, 65), flat);
    FAIL() << "1-D weight accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("nf4_linear"), HasSubstr("2-D"), HasSubstr("(128")));
  }
}

// ---- float64 gradchecks (the registry requires one for every differentiable op) ----

using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

GRADCHECK_TEST(nf4_linear, batched_input) {
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({5, 96}, 71));
  const Tensor x = Tensor::randn({2, 3, 96}, 72, DType::f64).set_requires_grad(true);
  expect_gradcheck([w](In in) { return Out{nf4_linear(in[0], w)}; }, {x});
}

GRADCHECK_TEST(nf4_linear, noncontiguous_input) {
  const ops::Nf4Tensor w = ops::nf4_quantize(Tensor::randn({7, 70}, 73));
  const Tensor x = ops::transpose(Tensor::randn({70, 4}, 74, DType::f64), 0, 1).set_requires_grad(true);  // (4, 70)
  ASSERT_FALSE(x.is_contiguous());
  expect_gradcheck([w](In in) { return Out{nf4_linear(in[0], w)}; }, {x});
}

}  // namespace
}  // namespace shardlab::testing

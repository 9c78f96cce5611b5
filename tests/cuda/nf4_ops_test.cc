// The NF4 ops on CUDA weights (cuda/nf4_ops_kernels.cu) against the CPU ops: quantization (done on
// the host) bit for bit, absmax and dequantization bit for bit in every float dtype, nf4_linear and
// its input gradient within the matmul tolerances, strided inputs, and weights on the wrong device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/ops.h"
#include "core/ops/nf4.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::expect_matches_cpu;
using testing::on_cuda;
using testing::Tolerance;

constexpr Tolerance kExact{0.0, 0.0};

Nf4Tensor nf4_on_cuda(const Nf4Tensor& q) {
  Nf4Tensor g = q;
  g.packed = on_cuda(q.packed);
  g.absmax_codes = on_cuda(q.absmax_codes);
  g.nested_absmax = on_cuda(q.nested_absmax);
  g.offset = on_cuda(q.offset);
  return g;
}

TEST(CudaNf4Ops, QuantizeOfACudaWeightEqualsTheCpuQuantization) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16}) {
    // 3 * 37 = 111 elements: an odd count (padded nibble) and a partial last block.
    for (const Shape& shape : {Shape{300, 70}, Shape{3, 37}}) {
      const Tensor w = Tensor::randn(shape, 1, dt, 0.0, 0.02);
      const Nf4Tensor want = ops::nf4_quantize(w);
      const Nf4Tensor got = ops::nf4_quantize(on_cuda(w));
      const std::string what = std::string(dtype_name(dt)) + " " + shape_str(shape);
      EXPECT_EQ(got.shape, want.shape) << what;
      EXPECT_EQ(got.dtype, want.dtype) << what;
      expect_matches_cpu(got.packed, want.packed, kExact, what + " packed");
      expect_matches_cpu(got.absmax_codes, want.absmax_codes, kExact, what + " absmax codes");
      expect_matches_cpu(got.nested_absmax, want.nested_absmax, kExact, what + " nested absmax");
      expect_matches_cpu(got.offset, want.offset, kExact, what + " offset");
    }
  }
}

TEST(CudaNf4Ops, AbsmaxAndDequantizeAreBitExactInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  // 70 * 300 / 64 = 329 blocks: more than one nested-absmax block of 256.
  for (const Shape& shape : {Shape{300, 70}, Shape{3, 37}, Shape{2, 3, 50}}) {
    const Nf4Tensor q = ops::nf4_quantize(Tensor::randn(shape, 2, DType::f32, 0.0, 0.05));
    const Nf4Tensor g = nf4_on_cuda(q);
    expect_matches_cpu(ops::nf4_absmax(g), ops::nf4_absmax(q), kExact, "absmax " + shape_str(shape));
    for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
      expect_matches_cpu(ops::nf4_dequantize(g, dt), ops::nf4_dequantize(q, dt), kExact,
                         std::string("dequantize to ") + dtype_name(dt) + " " + shape_str(shape));
  }
}

TEST(CudaNf4Ops, LinearAndInputGradientMatchTheCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t N = 130, K = 200;  // not multiples of the 64 x 64 tile
  const Nf4Tensor q = ops::nf4_quantize(Tensor::randn({N, K}, 3, DType::f32, 0.0, 0.05));
  const Nf4Tensor g = nf4_on_cuda(q);
  // 3 rows take the fused dequantize-GEMM kernel, 70 rows dequantize + cuBLASLt (NOTE [nf4 GEMM path]).
  for (int64_t rows : {3, 35})
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const Tensor x = Tensor::randn({2, rows, K}, 4, dt), dy = Tensor::randn({2, rows, N}, 5, dt);
    const std::string what = std::string(dtype_name(dt)) + " with " + std::to_string(2 * rows) + " rows";
    expect_matches_cpu(ops::nf4_linear(on_cuda(x), g), ops::nf4_linear(x, q), "matmul", what + " forward");
    expect_matches_cpu(ops::nf4_linear_backward_input(on_cuda(dy), g), ops::nf4_linear_backward_input(dy, q),
                       "matmul", what + " input gradient");
  }
}

TEST(CudaNf4Ops, StridedInputAndEmptyBatch) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t N = 64, K = 96;
  const Nf4Tensor q = ops::nf4_quantize(Tensor::randn({N, K}, 6, DType::f32, 0.0, 0.05));
  const Nf4Tensor g = nf4_on_cuda(q);
  const Tensor base = Tensor::randn({K, 17}, 7, DType::bf16);
  const Tensor x = ops::transpose(base, 0, 1);  // (17, K), strided
  const Tensor xg = ops::transpose(on_cuda(base), 0, 1);
  ASSERT_FALSE(xg.is_contiguous());
  expect_matches_cpu(ops::nf4_linear(xg, g), ops::nf4_linear(x, q), "matmul", "strided bf16 forward");
  const Tensor empty = on_cuda(Tensor::zeros({0, K}, DType::f32));
  const Tensor y = ops::nf4_linear(empty, g);
  EXPECT_EQ(shape_str(y.shape()), shape_str({0, N}));
}

TEST(CudaNf4Ops, WeightOnTheWrongDeviceNamesTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Nf4Tensor q = ops::nf4_quantize(Tensor::randn({8, 64}, 8, DType::f32));
  const Tensor x = on_cuda(Tensor::randn({3, 64}, 9, DType::f32));
  try {
    ops::nf4_linear(x, q);  // the weight stayed on the CPU
    FAIL() << "a CPU weight did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nf4_linear"));
    EXPECT_THAT(e.what(), HasSubstr("is on cpu"));
  }
  Nf4Tensor mixed = nf4_on_cuda(q);
  mixed.offset = q.offset;  // one part left behind
  try {
    ops::nf4_dequantize(mixed, DType::f32);
    FAIL() << "a mixed-device weight did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nf4_dequantize"));
    EXPECT_THAT(e.what(), HasSubstr("offset"));
  }
}

}  // namespace
}  // namespace shardlab

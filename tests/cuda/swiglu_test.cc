// CUDA SwiGLU (cuda/swiglu.cu) against the CPU kernel: every float dtype, sizes with a scalar tail
// after the 16-byte packs, misaligned starts, gate/up as strided halves of one fused projection,
// and errors that name the op.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::expect_matches_cpu;
using testing::on_cuda;

void expect_swiglu_matches(const Tensor& gate_cpu, const Tensor& up_cpu, const Tensor& dout_cpu,
                           const Tensor& gate, const Tensor& up, const Tensor& dout, const std::string& what) {
  expect_matches_cpu(ops::swiglu_fwd(gate, up), ops::swiglu_fwd(gate_cpu, up_cpu), "swiglu", what + " out");
  const ops::SwigluGrads want = ops::swiglu_bwd(dout_cpu, gate_cpu, up_cpu);
  const ops::SwigluGrads got = ops::swiglu_bwd(dout, gate, up);
  expect_matches_cpu(got.dgate, want.dgate, "swiglu", what + " dgate");
  expect_matches_cpu(got.dup, want.dup, "swiglu", what + " dup");
}

void expect_swiglu_matches(const Shape& shape, DType dt, uint64_t seed) {
  const Tensor g = Tensor::randn(shape, seed, dt, 0.0, 2.0), u = Tensor::randn(shape, seed + 1, dt),
               d = Tensor::randn(shape, seed + 2, dt);
  expect_swiglu_matches(g, u, d, on_cuda(g), on_cuda(u), on_cuda(d), std::string(dtype_name(dt)) + " " + shape_str(shape));
}

TEST(CudaSwiglu, MatchesCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    expect_swiglu_matches({4, 256}, dt, 1);  // whole packs
    expect_swiglu_matches({7, 13}, dt, 2);   // 91 elements: a partial last pack
    expect_swiglu_matches({1}, dt, 3);
  }
  expect_swiglu_matches({3, 14336 + 5}, DType::bf16, 4);  // Llama-8B MLP width
}

TEST(CudaSwiglu, MisalignedAndStridedOperands) {
  SL_SKIP_WITHOUT_CUDA();
  // Starting one element into the storage: contiguous but not 16-byte aligned.
  const Tensor base = Tensor::randn({3, 1001}, 5, DType::bf16);
  const Tensor gate_cpu = ops::view(ops::narrow(ops::view(base, {3003}), 0, 1, 3000), {3, 1000});
  const Tensor up_cpu = Tensor::randn({3, 1000}, 6, DType::bf16), dout_cpu = Tensor::randn({3, 1000}, 7, DType::bf16);
  const Tensor gbase = on_cuda(base);
  const Tensor gate = ops::view(ops::narrow(ops::view(gbase, {3003}), 0, 1, 3000), {3, 1000});
  expect_swiglu_matches(gate_cpu, up_cpu, dout_cpu, gate, on_cuda(up_cpu), on_cuda(dout_cpu), "misaligned");

  // gate and up as the two halves of one fused (M, 2F) projection output.
  const Tensor fused_cpu = Tensor::randn({6, 2 * 40}, 8, DType::f32);
  const Tensor fused = on_cuda(fused_cpu);
  const Tensor d_cpu = Tensor::randn({6, 40}, 9, DType::f32);
  const Tensor g_half = ops::narrow(fused, 1, 0, 40), u_half = ops::narrow(fused, 1, 40, 40);
  ASSERT_FALSE(g_half.is_contiguous());
  expect_swiglu_matches(ops::narrow(fused_cpu, 1, 0, 40), ops::narrow(fused_cpu, 1, 40, 40), d_cpu, g_half, u_half,
                        on_cuda(d_cpu), "fused halves");
}

TEST(CudaSwiglu, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor g = on_cuda(Tensor::randn({2, 3}, 10, DType::f32));
  try {
    ops::swiglu_fwd(g, on_cuda(Tensor::randn({3, 2}, 11, DType::f32)));
    FAIL() << "mismatched shapes did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("swiglu_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 2)"));
  }
  try {
    ops::swiglu_bwd(g, g, Tensor::randn({2, 3}, 12, DType::f32));  // up left on the CPU
    FAIL() << "mixed devices did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("swiglu_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("device mismatch"));
  }
}

}  // namespace
}  // namespace shardlab

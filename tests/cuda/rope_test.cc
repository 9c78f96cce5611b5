// CUDA rotary embedding (cuda/rope.cu) against the CPU kernel: every float dtype, (T,) and (B, T)
// positions in i32 and i64, Llama-3 frequency scaling at long-context positions (where an f32
// angle would be visibly wrong), strided heads and positions, the backward, and device errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::expect_matches_cpu;
using testing::on_cuda;

ops::RopeConfig llama3_config() {
  ops::RopeConfig c;
  c.theta = 500000.0;
  c.scaling = ops::RopeScaling{};  // factor 8, low 1, high 4, original context 8192
  return c;
}

// rope_fwd and rope_bwd of x on both backends; positions may be on the CPU (moved here).
void expect_rope_matches(const Tensor& x_cpu, const Tensor& pos_cpu, const ops::RopeConfig& config,
                         const std::string& what) {
  const Tensor x = on_cuda(x_cpu), pos = on_cuda(pos_cpu);
  expect_matches_cpu(ops::rope_fwd(x, pos, config), ops::rope_fwd(x_cpu, pos_cpu, config), "rope", what + " fwd");
  expect_matches_cpu(ops::rope_bwd(x, pos, config), ops::rope_bwd(x_cpu, pos_cpu, config), "rope", what + " bwd");
}

std::vector<int64_t> positions(int64_t n, int64_t stride, int64_t start) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(start + i * stride);
  return p;
}

TEST(CudaRope, MatchesCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  const ops::RopeConfig config;  // theta 10000, no scaling
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const Tensor x = Tensor::randn({2, 3, 5, 8}, 1, dt);
    const Tensor pos = Tensor::from_ints(positions(5, 3, 0), {5}, DType::i64);
    expect_rope_matches(x, pos, config, std::string(dtype_name(dt)));
  }
}

TEST(CudaRope, PerBatchPositionsInI32AndLlama3Scaling) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t B = 2, H = 4, T = 37, D = 128;
  std::vector<int64_t> p = positions(T, 1, 5);
  const std::vector<int64_t> q = positions(T, 211, 100000);  // long context: angles up to ~1e5 rad
  p.insert(p.end(), q.begin(), q.end());
  const Tensor pos = Tensor::from_ints(p, {B, T}, DType::i32);
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = Tensor::randn({B, H, T, D}, 2, dt);
    expect_rope_matches(x, pos, llama3_config(), std::string("llama3 ") + dtype_name(dt));
    expect_rope_matches(x, ops::to_dtype(pos, DType::i64), ops::RopeConfig{}, std::string("i64 ") + dtype_name(dt));
  }
}

TEST(CudaRope, StridedHeadsAndPositions) {
  SL_SKIP_WITHOUT_CUDA();
  // Attention heads arrive as (B, T, H, D).transpose(1, 2); positions as a transposed (T, B).
  const int64_t B = 2, T = 9, H = 3, D = 16;
  const Tensor x = ops::transpose(Tensor::randn({B, T, H, D}, 3, DType::f32), 1, 2);
  const Tensor pos = ops::transpose(Tensor::from_ints(positions(T * B, 7, 1), {T, B}, DType::i64), 0, 1);
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(pos.is_contiguous());
  const ops::RopeConfig config = llama3_config();
  const Tensor want = ops::rope_fwd(x, pos, config);
  // Strided on the device too: transpose after the move.
  const Tensor xg = ops::transpose(on_cuda(Tensor::randn({B, T, H, D}, 3, DType::f32)), 1, 2);
  const Tensor pg = ops::transpose(on_cuda(Tensor::from_ints(positions(T * B, 7, 1), {T, B}, DType::i64)), 0, 1);
  expect_matches_cpu(ops::rope_fwd(xg, pg, config), want, "rope", "strided fwd");
  // A head-dim stride other than 1: every other element of a (..., 2D) tensor.
  const Tensor wide = Tensor::randn({1, 2, 4, 2 * D}, 4, DType::f32);
  const Tensor xs = ops::slice(wide, 3, 0, 2 * D, 2);
  const Tensor p4 = Tensor::from_ints(positions(4, 1, 0), {4}, DType::i64);
  expect_matches_cpu(ops::rope_fwd(ops::slice(on_cuda(wide), 3, 0, 2 * D, 2), on_cuda(p4), config),
                     ops::rope_fwd(xs, p4, config), "rope", "head-dim stride 2");
}

TEST(CudaRope, BackwardUndoesForward) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor x = on_cuda(Tensor::randn({1, 2, 33, 64}, 5, DType::f32));
  const Tensor pos = on_cuda(Tensor::from_ints(positions(33, 13, 0), {33}, DType::i64));
  const ops::RopeConfig config = llama3_config();
  const Tensor back = ops::rope_bwd(ops::rope_fwd(x, pos, config), pos, config);
  expect_matches_cpu(back, x.to(Device::cpu()), testing::Tolerance{1e-5, 1e-5}, "rope_bwd(rope_fwd(x))");
}

TEST(CudaRope, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor x = on_cuda(Tensor::randn({1, 1, 3, 4}, 6, DType::f32));
  try {
    ops::rope_fwd(x, Tensor::from_ints({0, 1, 2}, {3}, DType::i64), ops::RopeConfig{});  // positions on the CPU
    FAIL() << "mixed devices did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("device mismatch"));
  }
  try {
    ops::rope_bwd(x, on_cuda(Tensor::from_ints({0, 1}, {2}, DType::i64)), ops::RopeConfig{});
    FAIL() << "wrong positions shape did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(2,)"));
  }
  try {
    ops::rope_fwd(x, on_cuda(Tensor::zeros({3}, DType::f32)), ops::RopeConfig{});
    FAIL() << "float positions did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rope_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("f32"));
  }
}

}  // namespace
}  // namespace shardlab

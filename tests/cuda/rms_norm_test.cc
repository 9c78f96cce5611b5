// CUDA RMSNorm (cuda/rms_norm.cu) against the CPU kernel on the same inputs: every float dtype,
// vectorized and scalar row lengths, rows past the 512-chunk weight-gradient partition, the
// global-memory accumulator path for wide rows, strided inputs, determinism and device errors.
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

// Forward and backward of x (..., d) on both backends, compared within the rms_norm tolerances.
void expect_rms_matches(const Tensor& x_cpu, const Tensor& w_cpu, const Tensor& dy_cpu, const std::string& what) {
  const double eps = 1e-5;
  const ops::RmsNormOut want = ops::rms_norm_fwd(x_cpu, w_cpu, eps);
  const Tensor x = on_cuda(x_cpu), w = on_cuda(w_cpu), dy = on_cuda(dy_cpu);
  const ops::RmsNormOut got = ops::rms_norm_fwd(x, w, eps);
  expect_matches_cpu(got.y, want.y, "rms_norm", what + " y");
  expect_matches_cpu(got.rstd, want.rstd, "rms_norm", what + " rstd");

  const ops::RmsNormGrads want_g = ops::rms_norm_bwd(dy_cpu, x_cpu, w_cpu, want.rstd);
  const ops::RmsNormGrads got_g = ops::rms_norm_bwd(dy, x, w, got.rstd);
  expect_matches_cpu(got_g.dx, want_g.dx, "rms_norm", what + " dx");
  expect_matches_cpu(got_g.dweight, want_g.dweight, "rms_norm", what + " dweight");
}

void expect_rms_matches(const Shape& shape, DType dt, uint64_t seed) {
  const int64_t d = shape.back();
  const Tensor x = Tensor::randn(shape, seed, dt);
  const Tensor w = Tensor::randn({d}, seed + 1, dt, 1.0, 0.3);
  const Tensor dy = Tensor::randn(shape, seed + 2, dt);
  expect_rms_matches(x, w, dy, std::string(dtype_name(dt)) + " " + shape_str(shape));
}

TEST(CudaRmsNorm, MatchesCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    expect_rms_matches({3, 5, 64}, dt, 1);   // 16-byte packs
    expect_rms_matches({7, 33}, dt, 2);      // odd rows: one element per load
  }
}

TEST(CudaRmsNorm, LlamaWidthRowsAndManyChunks) {
  SL_SKIP_WITHOUT_CUDA();
  // 1000 rows: more than the 512 weight-gradient chunks, so chunks hold 2 rows and the last
  // blocks have none; 3 rows: fewer rows than chunks.
  expect_rms_matches({1000, 256}, DType::f32, 3);
  expect_rms_matches({3, 4096}, DType::bf16, 4);
  expect_rms_matches({2, 64, 4096}, DType::bf16, 5);
}

TEST(CudaRmsNorm, WideRowsAccumulateInGlobalMemory) {
  SL_SKIP_WITHOUT_CUDA();
  // Past 40 KiB of column accumulators per block (10240 f32 / 5120 f64 columns) the backward keeps
  // them in its row of the partial buffer instead of shared memory.
  expect_rms_matches({5, 12000}, DType::f32, 6);
  expect_rms_matches({4, 7001}, DType::f64, 7);
}

TEST(CudaRmsNorm, StridedInputs) {
  SL_SKIP_WITHOUT_CUDA();
  // x as the transpose of a (d, rows) tensor, dy as a column slice of a wider one.
  const Tensor x = ops::transpose(Tensor::randn({96, 10}, 8, DType::f32), 0, 1);  // (10, 96)
  const Tensor w = Tensor::randn({96}, 9, DType::f32, 1.0, 0.3);
  const Tensor dy = ops::narrow(Tensor::randn({10, 100}, 10, DType::f32), 1, 3, 96);
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(dy.is_contiguous());
  expect_rms_matches(x, w, dy, "strided f32");

  // The same through CUDA views (made contiguous on the device by the kernel).
  const Tensor xg = ops::transpose(on_cuda(Tensor::randn({96, 10}, 8, DType::f32)), 0, 1);
  ASSERT_FALSE(xg.is_contiguous());
  const ops::RmsNormOut got = ops::rms_norm_fwd(xg, on_cuda(w), 1e-5);
  expect_matches_cpu(got.y, ops::rms_norm_fwd(x, w, 1e-5).y, "rms_norm", "CUDA view y");
}

TEST(CudaRmsNorm, WeightGradientIsDeterministic) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor x = on_cuda(Tensor::randn({777, 512}, 11, DType::bf16));
  const Tensor w = on_cuda(Tensor::randn({512}, 12, DType::bf16));
  const Tensor dy = on_cuda(Tensor::randn({777, 512}, 13, DType::bf16));
  const Tensor rstd = ops::rms_norm_fwd(x, w, 1e-6).rstd;
  const std::vector<double> first = ops::rms_norm_bwd(dy, x, w, rstd).dweight.to_double_vector();
  for (int run = 0; run < 3; ++run)
    EXPECT_EQ(ops::rms_norm_bwd(dy, x, w, rstd).dweight.to_double_vector(), first) << "run " << run;
}

TEST(CudaRmsNorm, EmptyRowsGiveZeroWeightGradient) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor x = on_cuda(Tensor::zeros({0, 8}, DType::f32));
  const Tensor w = on_cuda(Tensor::ones({8}, DType::f32));
  const ops::RmsNormOut out = ops::rms_norm_fwd(x, w, 1e-5);
  EXPECT_EQ(out.rstd.numel(), 0);
  const ops::RmsNormGrads g = ops::rms_norm_bwd(x, x, w, out.rstd);
  EXPECT_EQ(g.dweight.to_double_vector(), std::vector<double>(8, 0.0));
}

TEST(CudaRmsNorm, MixedDevicesAndDtypesNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor x = on_cuda(Tensor::randn({2, 4}, 14, DType::f32));
  try {
    ops::rms_norm_fwd(x, Tensor::ones({4}, DType::f32), 1e-5);  // weight left on the CPU
    FAIL() << "mixed devices did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("device mismatch"));
  }
  try {
    ops::rms_norm_fwd(x, on_cuda(Tensor::ones({4}, DType::bf16)), 1e-5);
    FAIL() << "mixed dtypes did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("dtype mismatch"));
  }
  try {
    ops::rms_norm_bwd(x, x, on_cuda(Tensor::ones({4}, DType::f32)), on_cuda(Tensor::ones({3}, DType::f32)));
    FAIL() << "a wrong rstd did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("rms_norm_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(2,)"));
  }
}

}  // namespace
}  // namespace shardlab

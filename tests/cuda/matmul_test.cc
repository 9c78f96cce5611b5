// CUDA matmul (cuBLASLt, cuda/matmul_kernels.cu + cuda/cublaslt_gemm.cc) against the CPU matmul:
// every float dtype, odd sizes, transposed / offset / stepped views, broadcast batches, K = 0,
// TF32, a Llama-sized projection, the wrapper's beta, and the error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/memory_ledger.h"
#include "core/ops.h"
#include "cuda/cublaslt_gemm.h"
#include "cuda/stream.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab::testing {
namespace {

using ::testing::HasSubstr;
using View = std::function<Tensor(const Tensor&)>;

Tensor same(const Tensor& t) { return t; }
Tensor transposed(const Tensor& t) { return ops::transpose(t, -2, -1); }

// Moves the stored operands to the GPU, applies the same view on both sides (so GPU views are
// views of GPU storage, not copies made by the transfer) and compares a @ b with the CPU result.
void expect_matmul_matches(const Tensor& a_store, const Tensor& b_store, const std::string& what,
                           const View& view_a = same, const View& view_b = same) {
  const Tensor want = ops::matmul(view_a(a_store), view_b(b_store));
  const Tensor got = ops::matmul(view_a(on_cuda(a_store)), view_b(on_cuda(b_store)));
  expect_matches_cpu(got, want, "matmul", what);
}

// a's entries have stddev 1/sqrt(K), so every product has magnitude ~1 whatever K is and the
// table's absolute tolerances mean the same thing for every shape.
Tensor lhs(const Shape& shape, int64_t K, uint64_t seed, DType dtype) {
  return Tensor::randn(shape, seed, dtype, 0.0, 1.0 / std::sqrt(double(std::max<int64_t>(K, 1))));
}

// Restores the process-wide TF32 switch however the test ends.
struct Tf32Guard {
  explicit Tf32Guard(bool on) { cuda::set_allow_tf32(on); }
  ~Tf32Guard() { cuda::set_allow_tf32(false); }
};

constexpr DType kFloatDtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

TEST(CudaMatmul, OddSizesInEveryDtype) {
  SL_SKIP_WITHOUT_CUDA();
  struct Mkn { int64_t M, K, N; };
  const Mkn sizes[] = {{1, 1, 1}, {1, 7, 33}, {7, 33, 1}, {33, 129, 7}, {129, 7, 129}, {64, 256, 48}};
  for (DType dtype : kFloatDtypes) {
    uint64_t seed = 10;
    for (const Mkn& s : sizes) {
      const std::string what = std::string(dtype_name(dtype)) + " (" + std::to_string(s.M) + ", " +
                                std::to_string(s.K) + ") @ (" + std::to_string(s.K) + ", " + std::to_string(s.N) + ")";
      expect_matmul_matches(lhs({s.M, s.K}, s.K, seed, dtype), Tensor::randn({s.K, s.N}, seed + 1, dtype), what);
      seed += 2;
    }
  }
}

TEST(CudaMatmul, TransposedViewsOfEitherOperand) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t M = 33, K = 129, N = 65;
  for (DType dtype : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const std::string d = dtype_name(dtype);
    const Tensor a = lhs({M, K}, K, 1, dtype), at = lhs({K, M}, K, 2, dtype);
    const Tensor b = Tensor::randn({K, N}, 3, dtype), bt = Tensor::randn({N, K}, 4, dtype);
    expect_matmul_matches(at, b, d + " a^T @ b", transposed, same);
    expect_matmul_matches(a, bt, d + " a @ b^T", same, transposed);
    expect_matmul_matches(at, bt, d + " a^T @ b^T", transposed, transposed);
  }
}

TEST(CudaMatmul, OffsetAndSteppedViews) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t M = 40, K = 72, N = 24;
  for (DType dtype : {DType::f32, DType::bf16}) {
    const std::string d = dtype_name(dtype);
    // Dropping the first column leaves every row one element (2 bytes for bf16) off alignment:
    // the GEMM must pick kernels for the real pointer alignment, not assume 16 bytes.
    auto drop_first_column = [](const Tensor& t) { return ops::narrow(t, -1, 1, t.size(-1) - 1); };
    expect_matmul_matches(lhs({M, K + 1}, K, 5, dtype), Tensor::randn({K, N}, 6, dtype), d + " offset a",
                          drop_first_column, same);
    expect_matmul_matches(lhs({M, K}, K, 7, dtype), Tensor::randn({N, K + 1}, 8, dtype), d + " offset b^T", same,
                          [&](const Tensor& t) { return transposed(drop_first_column(t)); });
    // Every other column: no unit stride, so the operand is made contiguous first.
    expect_matmul_matches(lhs({M, 2 * K}, K, 9, dtype), Tensor::randn({K, N}, 10, dtype), d + " stepped a",
                          [](const Tensor& t) { return ops::slice(t, -1, 0, t.size(-1), 2); }, same);
  }
}

TEST(CudaMatmul, BatchedAndBroadcast) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t B = 3, M = 17, K = 40, N = 23;
  for (DType dtype : {DType::f32, DType::bf16}) {
    const std::string d = dtype_name(dtype);
    // (B, M, K) @ (K, N): the linear-layer case, one tall GEMM.
    expect_matmul_matches(lhs({B, M, K}, K, 11, dtype), Tensor::randn({K, N}, 12, dtype), d + " (B,M,K)@(K,N)");
    // (B, M, K) @ (N, K)^T: a Linear layer's x @ W^T.
    expect_matmul_matches(lhs({B, M, K}, K, 13, dtype), Tensor::randn({N, K}, 14, dtype), d + " (B,M,K)@(N,K)^T",
                          same, transposed);
    // (B, M, K) @ (B, K, N): strided batch.
    expect_matmul_matches(lhs({B, M, K}, K, 15, dtype), Tensor::randn({B, K, N}, 16, dtype), d + " (B,M,K)@(B,K,N)");
    // (M, K) @ (B, K, N): a broadcast with batch stride 0.
    expect_matmul_matches(lhs({M, K}, K, 17, dtype), Tensor::randn({B, K, N}, 18, dtype), d + " (M,K)@(B,K,N)");
    // Batched transposes: (B, K, M)^T @ (B, N, K)^T.
    expect_matmul_matches(lhs({B, K, M}, K, 19, dtype), Tensor::randn({B, N, K}, 20, dtype),
                          d + " (B,K,M)^T@(B,N,K)^T", transposed, transposed);
    // Interleaved batch: (M, B, K) permuted to (B, M, K), batch stride K < one matrix.
    expect_matmul_matches(lhs({M, B, K}, K, 21, dtype), Tensor::randn({K, N}, 22, dtype), d + " permuted (B,M,K)@(K,N)",
                          [](const Tensor& t) { return ops::permute(t, {1, 0, 2}); }, same);
  }
}

TEST(CudaMatmul, FourDimsWithBroadcastBatch) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t M = 9, K = 33, N = 14;
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const std::string d = dtype_name(dtype);
    // Batch (2, 3) from (2, 1) and (1, 3): no single stride covers it, so dim 0 is looped over.
    expect_matmul_matches(lhs({2, 1, M, K}, K, 23, dtype), Tensor::randn({1, 3, K, N}, 24, dtype),
                          d + " (2,1,M,K)@(1,3,K,N)");
    // (2, 3, M, K) @ (3, K, N): b broadcast over the outer dim.
    expect_matmul_matches(lhs({2, 3, M, K}, K, 25, dtype), Tensor::randn({3, K, N}, 26, dtype),
                          d + " (2,3,M,K)@(3,K,N)");
    // Attention-like (B, H, T, D) @ (B, H, D, T) with a transposed key view.
    expect_matmul_matches(lhs({2, 4, M, K}, K, 27, dtype), Tensor::randn({2, 4, N, K}, 28, dtype),
                          d + " (B,H,T,D)@(B,H,T,D)^T", same, transposed);
    // (2, 3, M, K) @ (K, N) expanded to (2, 3, K, N): stride-0 batch dims on b.
    expect_matmul_matches(lhs({2, 3, M, K}, K, 29, dtype), Tensor::randn({K, N}, 30, dtype),
                          d + " (2,3,M,K)@expand(K,N)", same,
                          [](const Tensor& t) { return ops::expand(t, {2, 3, t.size(0), t.size(1)}); });
  }
}

TEST(CudaMatmul, EmptyInnerDimGivesZerosAndEmptyShapesWork) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::f32, DType::bf16}) {
    const std::string d = dtype_name(dtype);
    expect_matmul_matches(Tensor::randn({3, 0}, 1, dtype), Tensor::randn({0, 4}, 2, dtype), d + " K = 0");
    expect_matmul_matches(Tensor::randn({2, 3, 0}, 1, dtype), Tensor::randn({0, 4}, 2, dtype), d + " batched K = 0");
    expect_matmul_matches(Tensor::randn({0, 5}, 1, dtype), Tensor::randn({5, 4}, 2, dtype), d + " M = 0");
    expect_matmul_matches(Tensor::randn({0, 3, 5}, 1, dtype), Tensor::randn({5, 4}, 2, dtype), d + " batch 0");
  }
}

// TF32 keeps 10 mantissa bits of each input (relative error up to 2^-11 rounded, 2^-10 truncated),
// so each unit-variance product carries ~1e-3 relative error, ~1e-3 sqrt(K) absolute over a K-term
// sum. With K = 512 that is ~0.02 per element; atol 0.15 (7 sigma) plus rtol 1e-2 (the bias of
// truncation) is the stated bound, against 1e-5 + 1e-4 |x| with TF32 off.
TEST(CudaMatmul, Tf32IsOptInWithAStatedLooserTolerance) {
  SL_SKIP_WITHOUT_CUDA();
  EXPECT_FALSE(cuda::allow_tf32()) << "TF32 must be off by default, as PyTorch's matmul";
  const int64_t M = 64, K = 512, N = 96;
  const Tensor a = Tensor::randn({M, K}, 31), b = Tensor::randn({K, N}, 32);
  const Tensor want = ops::matmul(a, b);
  Tf32Guard tf32(true);
  const Tensor got = ops::matmul(on_cuda(a), on_cuda(b));
  expect_matches_cpu(got, want, Tolerance{0.15, 1e-2}, "f32 with TF32");
}

TEST(CudaMatmul, LlamaProjectionThroughATransposedWeightView) {
  SL_SKIP_WITHOUT_CUDA();
  // (512, 2048) @ (5632, 2048)^T: TinyLlama's gate/up projection as nn::Linear computes it.
  const int64_t T = 512, C = 2048, F = 5632;
  for (DType dtype : {DType::bf16, DType::f32}) {
    const Tensor x = Tensor::randn({T, C}, 33, dtype), w = Tensor::randn({F, C}, 34, dtype, 0.0, 0.02);
    expect_matmul_matches(x, w, std::string(dtype_name(dtype)) + " x @ W^T (512, 2048) @ (2048, 5632)", same,
                          transposed);
  }
}

// Layouts cuBLASLt has no algorithm for go to classic cuBLAS; forcing that path checks it here.
TEST(CudaMatmul, ClassicCublasFallbackMatchesTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  struct ForceClassic {
    ForceClassic() { cuda::detail::set_force_classic_cublas(true); }
    ~ForceClassic() { cuda::detail::set_force_classic_cublas(false); }
  } force;
  for (DType dtype : kFloatDtypes) {
    const std::string d = std::string(dtype_name(dtype)) + " classic";
    expect_matmul_matches(lhs({33, 129}, 129, 40, dtype), Tensor::randn({129, 7}, 41, dtype), d + " (33,129)@(129,7)");
    expect_matmul_matches(lhs({3, 17, 40}, 40, 42, dtype), Tensor::randn({23, 40}, 43, dtype), d + " (3,17,40)@(23,40)^T",
                          same, transposed);
    expect_matmul_matches(lhs({2, 1, 9, 33}, 33, 44, dtype), Tensor::randn({1, 3, 14, 33}, 45, dtype),
                          d + " (2,1,9,33)@(1,3,14,33)^T", same, transposed);
  }
}

TEST(CudaMatmul, WrapperAccumulatesWithBeta) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t M = 19, K = 31, N = 27;
  const Tensor a = lhs({M, K}, K, 35, DType::f32), b = Tensor::randn({K, N}, 36), c = Tensor::randn({M, N}, 37);
  const Tensor want = ops::add(ops::mul_scalar(ops::matmul(a, b), 0.5), ops::mul_scalar(c, 2.0));
  const Tensor da = on_cuda(a), db = on_cuda(b), dc = on_cuda(c);
  cuda::GemmProblem p;
  p.dtype = DType::f32;
  p.M = M;
  p.N = N;
  p.K = K;
  p.a = {da.raw_data(), K, 1, 0};
  p.b = {db.raw_data(), N, 1, 0};
  p.c = dc.raw_data();
  p.c_row_stride = N;
  p.alpha = 0.5;
  p.beta = 2.0;
  cuda::gemm(p, 0, cuda::compute_stream(0));
  expect_matches_cpu(dc, want, "matmul", "0.5 a @ b + 2 c");
}

TEST(CudaMatmul, WorkspaceIsTaggedInTheLedger) {
  SL_SKIP_WITHOUT_CUDA();
  (void)ops::matmul(on_cuda(Tensor::randn({8, 8}, 38)), on_cuda(Tensor::randn({8, 8}, 39)));
  const DeviceMemory mem = MemoryLedger::instance().snapshot(Device::cuda(0));
  EXPECT_GE(mem[MemTag::workspace].live, cuda::kGemmWorkspaceBytes);
}

TEST(CudaMatmul, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor a = on_cuda(Tensor::randn({4, 5}, 1)), b = on_cuda(Tensor::randn({5, 3}, 2));
  EXPECT_THAT(error_of([&] { ops::matmul(a, Tensor::randn({5, 3}, 2)); }), HasSubstr("matmul: device mismatch"));
  EXPECT_THAT(error_of([&] { ops::matmul(a, on_cuda(Tensor::randn({5, 3}, 2, DType::bf16))); }),
              HasSubstr("matmul: dtype mismatch"));
  EXPECT_THAT(error_of([&] { ops::matmul(a, a); }), HasSubstr("matmul: inner dims mismatch"));
  EXPECT_THAT(error_of([&] { ops::matmul(on_cuda(Tensor::randn({2, 4, 5}, 1)), on_cuda(Tensor::randn({3, 5, 3}, 2))); }),
              HasSubstr("cannot be broadcast"));
  EXPECT_THAT(error_of([&] { ops::matmul(on_cuda(Tensor::zeros({4, 5}, DType::i32)), on_cuda(Tensor::zeros({5, 3}, DType::i32))); }),
              HasSubstr("matmul: expected a floating tensor"));
  (void)b;
}

// These two need no GPU: the error text and the layout rule are host code.
TEST(CudaMatmul, CublasErrorsNameTheCallAndTheProblem) {
  const std::string msg = error_of([] { SL_CUBLAS_CHECK(CUBLAS_STATUS_NOT_SUPPORTED, "matmul bf16 GEMM (M=7)"); });
  EXPECT_THAT(msg, HasSubstr("cuBLAS error CUBLAS_STATUS_NOT_SUPPORTED"));
  EXPECT_THAT(msg, HasSubstr("for matmul bf16 GEMM (M=7)"));
  EXPECT_THAT(msg, HasSubstr("matmul_test.cc"));
}

TEST(CudaMatmul, ReadableLayoutsAreUnitStrideWithACoveringLeadingDim) {
  EXPECT_TRUE(cuda::gemm_readable(4, 5, 5, 1));    // contiguous
  EXPECT_TRUE(cuda::gemm_readable(4, 5, 8, 1));    // rows padded
  EXPECT_TRUE(cuda::gemm_readable(4, 5, 1, 4));    // transpose() view of a (5, 4) matrix
  EXPECT_TRUE(cuda::gemm_readable(1, 5, 0, 3));    // one row, any stride
  EXPECT_TRUE(cuda::gemm_readable(4, 1, 7, 0));    // one column, any stride
  EXPECT_FALSE(cuda::gemm_readable(4, 5, 10, 2));  // every other column
  EXPECT_FALSE(cuda::gemm_readable(4, 5, 0, 1));   // expanded rows: no leading dim
  EXPECT_FALSE(cuda::gemm_readable(4, 5, 1, 2));   // overlapping columns
}

}  // namespace
}  // namespace shardlab::testing

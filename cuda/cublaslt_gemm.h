// A thin cuBLASLt GEMM for row-major operands: one handle and one 32 MiB workspace per device (and
// stream), a cache of matmul descriptors with their heuristic-chosen algorithm (classic cuBLAS for
// the rare layout cuBLASLt has no algorithm for), the TF32 switch, and SL_CUBLAS_CHECK, which
// turns a failed cuBLAS call into a shardlab::Error naming the call and the shapes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace shardlab::cuda {

// Whether f32 GEMMs may round their inputs to TF32 (CUBLAS_COMPUTE_32F_FAST_TF32). Off by
// default, as PyTorch's matmul; process-wide (the trainer sets it once from its tf32 setting).
void set_allow_tf32(bool allow);
bool allow_tf32();

// A row-major matrix operand of a (batched) GEMM: element strides between rows and between
// columns, and between consecutive matrices of the batch (0 repeats one matrix for every entry).
// One of row_stride / col_stride must be 1 (or belong to a size-1 dim): see gemm_readable().
struct GemmOperand {
  const void* data = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  int64_t batch_stride = 0;
};

// C (batch, M, N) = alpha * A (batch, M, K) @ B (batch, K, N) + beta * C, every matrix row-major
// in the sense of GemmOperand; C's columns are contiguous (col stride 1), its rows c_row_stride
// (>= N) apart. All pointers are on one device; dtype is f32, f64, bf16 or f16 for all three.
// Accumulation: f64 in f64; f32 in f32 (TF32 inputs when allow_tf32()); bf16/f16 in f32 with the
// result rounded once to the input dtype (partial sums are never kept in 16 bits).
struct GemmProblem {
  const char* op = "cuda::gemm";  // named in error messages
  DType dtype = DType::f32;
  int64_t M = 0, N = 0, K = 0;
  int64_t batch = 1;
  GemmOperand a, b;
  void* c = nullptr;
  int64_t c_row_stride = 0;
  int64_t c_batch_stride = 0;
  double alpha = 1.0;
  double beta = 0.0;
};

// Whether a (rows, cols) matrix with element strides (row_stride, col_stride) can be handed to
// cuBLASLt without a copy: one stride is 1 and the other is a leading dimension that covers the
// matrix (>= its extent), as a contiguous matrix or a transpose() view of one has. A stepped
// slice or an expanded (stride-0) row is not: make it contiguous first.
bool gemm_readable(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride);

// Enqueues the GEMM on `stream` of `device` (no synchronisation). Needs cuda::initialize() (the
// workspace comes from the CUDA allocator). Requires M, N, K >= 1 and readable operands; batches
// beyond cuBLASLt's grid limit run in chunks. Thread-safe; each (device, stream) pair has its own
// workspace, which the GEMMs on that stream use one after another in stream order.
void gemm(const GemmProblem& problem, int device, cudaStream_t stream);

// The cuBLASLt handle of `device`, created on first use and kept for the process.
cublasLtHandle_t cublaslt_handle(int device);

// Workspace bytes every cached algorithm may use (Hopper kernels want 32 MiB).
inline constexpr int64_t kGemmWorkspaceBytes = int64_t(32) << 20;

namespace detail {
// Tests only: route every GEMM to the classic-cuBLAS fallback (taken for layouts cuBLASLt has no
// algorithm for), so that path is checked on any GPU.
void set_force_classic_cublas(bool force);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const std::string& context,
                                     const char* file, int line);
}  // namespace detail

}  // namespace shardlab::cuda

// SL_CUBLAS_CHECK(cublasLtMatmul(...), describe(problem)) throws shardlab::Error
// "cuBLAS error CUBLAS_STATUS_NOT_SUPPORTED (...) in cublasLtMatmul(...) for <context> at
// cuda/x.cc:12". `context` (a std::string expression) is evaluated only when the call failed.
#define SL_CUBLAS_CHECK(call, context)                                                                    \
  do {                                                                                                    \
    const cublasStatus_t sl_cublas_status_ = (call);                                                      \
    if (sl_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                       \
      ::shardlab::cuda::detail::throw_cublas_error(sl_cublas_status_, #call, (context), __FILE__, __LINE__); \
  } while (0)

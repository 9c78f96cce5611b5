// The cuBLASLt GEMM behind matmul (see cublaslt_gemm.h): row-major problems mapped to cuBLASLt's
// column-major convention, per-device handles and workspaces, and a cache of descriptor + algorithm
// per problem layout so the heuristic runs once per shape. A layout for which cuBLASLt offers no
// algorithm runs on classic cuBLAS (cublasGemmStridedBatchedEx_64), which takes any layout.
#include "cuda/cublaslt_gemm.h"

#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "core/tensor.h"
#include "cuda/backend.h"
#include "cuda/device.h"

namespace shardlab::cuda {

namespace detail {
void throw_cublas_error(cublasStatus_t status, const char* call, const std::string& context, const char* file,
                        int line) {
  std::ostringstream os;
  os << "cuBLAS error " << cublasLtGetStatusName(status) << " (" << cublasLtGetStatusString(status) << ") in "
     << call << " for " << context << " at " << file << ":" << line;
  throw Error(os.str());
}
}  // namespace detail

namespace {

std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_force_classic{false};

// Strided-batched kernels put the batch on a grid dimension; larger batches run in chunks.
constexpr int64_t kMaxBatchPerCall = 65535;
constexpr int kMaxDevices = 16;

// NOTE [row-major GEMM on cuBLASLt]: cuBLASLt reads column-major matrices. A row-major (R, C)
// matrix with row stride ld is, byte for byte, the column-major (C, R) matrix X^T with the same
// ld, and a transpose() view of a contiguous matrix (row stride 1) is the column-major X itself.
// So row-major C = A @ B is computed as column-major C^T = B^T @ A^T: cuBLASLt's "A" is our B
// and its "B" is our A, each with op N when it is stored row-major and op T when it is stored as
// a transposed view. No operand is ever copied.
struct ColMajor {
  cublasOperation_t op = CUBLAS_OP_N;
  uint64_t rows = 0, cols = 0;  // of the stored column-major matrix
  int64_t ld = 0;
};

// Row-major readable (unit column stride): the leading dimension is the row stride.
bool row_major_ld(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t& ld) {
  if (!(cols == 1 || cs == 1)) return false;
  ld = rows == 1 ? cols : rs;  // a single row places no constraint on its stride
  return ld >= cols;
}
// Column-major readable (unit row stride, e.g. a transpose() view): the leading dimension is the column stride.
bool col_major_ld(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t& ld) {
  if (!(rows == 1 || rs == 1)) return false;
  ld = cols == 1 ? rows : cs;
  return ld >= rows;
}

// How cuBLASLt reads the row-major (rows, cols) operand X so that op(stored) == X^T (see the NOTE).
ColMajor as_transposed(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  int64_t ld = 0;
  if (row_major_ld(rows, cols, rs, cs, ld))
    return {CUBLAS_OP_N, static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), ld};
  if (col_major_ld(rows, cols, rs, cs, ld))
    return {CUBLAS_OP_T, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld};
  SL_FAIL("cuda::gemm: internal error: operand (", rows, ", ", cols, ") with strides (", rs, ", ", cs,
          ") is not readable in place; callers make it contiguous first");
}

// The largest power of two (capped at 256, cuBLASLt's default requirement) dividing the address
// and, for a batch, the byte stride between matrices: every matrix of the batch is that aligned.
uint32_t alignment_bytes(const void* p, int64_t batch_stride_bytes) {
  uint64_t bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) | 256u;
  bits |= static_cast<uint64_t>(std::llabs(batch_stride_bytes));
  return static_cast<uint32_t>(bits & (~bits + 1));  // lowest set bit
}

cudaDataType_t cuda_data_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: SL_FAIL("cuda::gemm: takes f32, f64, bf16 or f16, not ", dtype_name(t));
  }
}

// Everything the descriptors and the heuristic's choice depend on; one cached plan per value.
struct PlanKey {
  int device = 0;
  DType dtype = DType::f32;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  uint64_t m = 0, n = 0, k = 0;  // column-major problem: D (m, n) = op(A) (m, k) op(B) (k, n)
  int32_t batch = 1;
  ColMajor a, b;
  int64_t ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // 0 when batch == 1
  uint32_t align_a = 256, align_b = 256, align_c = 256;
  bool force_classic = false;

  auto tie() const {
    return std::tie(device, dtype, compute, m, n, k, batch, a.op, a.rows, a.cols, a.ld, b.op, b.rows, b.cols, b.ld,
                    ldc, stride_a, stride_b, stride_c, align_a, align_b, align_c, force_classic);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

// Descriptors and algorithm for one PlanKey; created once and kept for the process (destroying
// them at exit could run after the CUDA context is gone). `classic`: no cuBLASLt algorithm, the
// key's layout goes to cublasGemmStridedBatchedEx_64 instead.
struct Plan {
  bool classic = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
};

std::mutex g_mutex;  // guards everything below
cublasLtHandle_t g_handles[kMaxDevices] = {};
cublasHandle_t g_classic_handles[kMaxDevices] = {};
std::map<std::pair<int, cudaStream_t>, Tensor*> g_workspaces;  // leaked on purpose, as the handles
std::map<PlanKey, Plan> g_plans;

std::string describe(const GemmProblem& p, int64_t batch) {
  std::ostringstream os;
  os << p.op << " " << dtype_name(p.dtype) << " GEMM (M=" << p.M << ", N=" << p.N << ", K=" << p.K
     << ", batch=" << batch << "; a strides (" << p.a.row_stride << ", " << p.a.col_stride << ", "
     << p.a.batch_stride << "), b strides (" << p.b.row_stride << ", " << p.b.col_stride << ", "
     << p.b.batch_stride << "), c row stride " << p.c_row_stride << ", tf32 " << (allow_tf32() ? "on" : "off")
     << ")";
  return os.str();
}

cublasLtHandle_t handle_locked(int device) {
  SL_CHECK(device >= 0 && device < kMaxDevices, "cuda::gemm: device index ", device, " out of range");
  if (g_handles[device] == nullptr) {
    SL_CUDA_CHECK(cudaSetDevice(device));
    SL_CUBLAS_CHECK(cublasLtCreate(&g_handles[device]), "device " + std::to_string(device));
  }
  return g_handles[device];
}

cublasHandle_t classic_handle_locked(int device) {
  SL_CHECK(device >= 0 && device < kMaxDevices, "cuda::gemm: device index ", device, " out of range");
  if (g_classic_handles[device] == nullptr) {
    SL_CUDA_CHECK(cudaSetDevice(device));
    cublasHandle_t h = nullptr;
    SL_CUBLAS_CHECK(cublasCreate(&h), "device " + std::to_string(device));
    // Reductions (split-K) in the compute type, never the 16-bit output type, as in the Lt path.
    SL_CUBLAS_CHECK(cublasSetMathMode(h, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                                   CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
                    "device " + std::to_string(device));
    g_classic_handles[device] = h;
  }
  return g_classic_handles[device];
}

void* workspace_locked(int device, cudaStream_t stream) {
  Tensor*& ws = g_workspaces[{device, stream}];
  if (ws == nullptr) {
    SL_CHECK(initialized(), "cuda::gemm: call cuda::initialize() first (the workspace comes from the CUDA allocator)");
    MemTagScope scope(MemTag::workspace);
    ws = new Tensor(Tensor::empty({kGemmWorkspaceBytes}, DType::u8, Device::cuda(device)));
  }
  return ws->raw_data();
}

void set_layout_batch(cublasLtMatrixLayout_t layout, int32_t batch, int64_t stride, const std::string& what) {
  SL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch),
                  what);
  SL_CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
      what);
}

Plan build_plan(cublasLtHandle_t handle, const PlanKey& key, const std::string& what) {
  Plan plan;
  if (key.force_classic) {
    plan.classic = true;
    return plan;
  }
  const cudaDataType_t type = cuda_data_type(key.dtype);
  const cudaDataType_t scale = key.dtype == DType::f64 ? CUDA_R_64F : CUDA_R_32F;
  SL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, key.compute, scale), what);
  const int32_t op_a = key.a.op, op_b = key.b.op;
  SL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), what);
  SL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), what);
  SL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, type, key.a.rows, key.a.cols, key.a.ld), what);
  SL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, type, key.b.rows, key.b.cols, key.b.ld), what);
  SL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c, type, key.m, key.n, key.ldc), what);
  if (key.batch > 1) {
    set_layout_batch(plan.a, key.batch, key.stride_a, what);
    set_layout_batch(plan.b, key.batch, key.stride_b, what);
    set_layout_batch(plan.c, key.batch, key.stride_c, what);
  }

  cublasLtMatmulPreference_t pref = nullptr;
  SL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref), what);
  const uint64_t max_workspace = static_cast<uint64_t>(kGemmWorkspaceBytes);
  SL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace,
                                                       sizeof max_workspace),
                  what);
  // The actual alignments (views at an offset may be only element-aligned): the heuristic then
  // offers only kernels that can load them.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c},
  };
  for (const auto& [attr, bytes] : aligns)
    SL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes), what);
  if (key.dtype == DType::bf16 || key.dtype == DType::f16) {
    // Split-K partial sums stay in f32 (never rounded to 16 bits and re-added), so the result is
    // the f32 sum rounded once, as the CPU kernel computes it.
    const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    SL_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask, sizeof mask),
        what);
  }

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED is how the heuristic says "no algorithm for this layout".
  if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED)
    detail::throw_cublas_error(status, "cublasLtMatmulAlgoGetHeuristic", what, __FILE__, __LINE__);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || found == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.desc);
    // Once per layout (plans are cached): a slower path taken should be visible, not silent.
    std::fprintf(stderr,
                 "shardlab: cuBLASLt has no algorithm for %s (pointer alignment of a %u, b %u, c %u bytes); using "
                 "cublasGemmStridedBatchedEx\n",
                 what.c_str(), key.align_b, key.align_a, key.align_c);
    return Plan{.classic = true};
  }
  plan.algo = result.algo;
  plan.workspace_bytes = result.workspaceSize;
  return plan;
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
void detail::set_force_classic_cublas(bool force) { g_force_classic.store(force, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

bool gemm_readable(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  int64_t ld = 0;
  return row_major_ld(rows, cols, row_stride, col_stride, ld) || col_major_ld(rows, cols, row_stride, col_stride, ld);
}

cublasLtHandle_t cublaslt_handle(int device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return handle_locked(device);
}

void gemm(const GemmProblem& p, int device, cudaStream_t stream) {
  SL_CHECK(p.M >= 1 && p.N >= 1 && p.K >= 1 && p.batch >= 1, p.op, ": cuda::gemm needs M, N, K, batch >= 1, got M=",
           p.M, " N=", p.N, " K=", p.K, " batch=", p.batch);
  SL_CHECK(gemm_readable(p.M, p.K, p.a.row_stride, p.a.col_stride) &&
               gemm_readable(p.K, p.N, p.b.row_stride, p.b.col_stride),
           p.op, ": operand strides not readable by cuBLASLt: ", describe(p, p.batch));
  SL_CHECK(p.c_row_stride >= p.N || p.M == 1, p.op, ": output row stride ", p.c_row_stride, " < N = ", p.N);
  const int64_t esize = dtype_size(p.dtype);
  const bool tf32 = p.dtype == DType::f32 && allow_tf32();

  PlanKey key;
  key.device = device;
  key.dtype = p.dtype;
  key.compute = p.dtype == DType::f64 ? CUBLAS_COMPUTE_64F : tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  key.m = static_cast<uint64_t>(p.N);
  key.n = static_cast<uint64_t>(p.M);
  key.k = static_cast<uint64_t>(p.K);
  key.a = as_transposed(p.K, p.N, p.b.row_stride, p.b.col_stride);  // cuBLASLt's A is our B (see the NOTE)
  key.b = as_transposed(p.M, p.K, p.a.row_stride, p.a.col_stride);
  key.ldc = std::max(p.c_row_stride, p.N);
  key.force_classic = g_force_classic.load(std::memory_order_relaxed);

  SL_CUDA_CHECK(cudaSetDevice(device));
  std::lock_guard<std::mutex> lock(g_mutex);
  const cublasLtHandle_t handle = handle_locked(device);
  void* workspace = workspace_locked(device, stream);
  for (int64_t start = 0; start < p.batch; start += kMaxBatchPerCall) {
    const int64_t count = std::min(kMaxBatchPerCall, p.batch - start);
    const char* a = static_cast<const char*>(p.a.data) + start * p.a.batch_stride * esize;
    const char* b = static_cast<const char*>(p.b.data) + start * p.b.batch_stride * esize;
    char* c = static_cast<char*>(p.c) + start * p.c_batch_stride * esize;
    key.batch = static_cast<int32_t>(count);
    key.stride_a = count > 1 ? p.b.batch_stride : 0;
    key.stride_b = count > 1 ? p.a.batch_stride : 0;
    key.stride_c = count > 1 ? p.c_batch_stride : 0;
    key.align_a = alignment_bytes(b, key.stride_a * esize);
    key.align_b = alignment_bytes(a, key.stride_b * esize);
    key.align_c = alignment_bytes(c, key.stride_c * esize);

    auto it = g_plans.find(key);
    if (it == g_plans.end()) it = g_plans.emplace(key, build_plan(handle, key, describe(p, count))).first;
    const Plan& plan = it->second;
    // Scale factors in the plan's scale type (f64 for f64, f32 otherwise), passed from the host.
    const double alpha64 = p.alpha, beta64 = p.beta;
    const float alpha32 = static_cast<float>(p.alpha), beta32 = static_cast<float>(p.beta);
    const void* alpha = p.dtype == DType::f64 ? static_cast<const void*>(&alpha64) : &alpha32;
    const void* beta = p.dtype == DType::f64 ? static_cast<const void*>(&beta64) : &beta32;
    if (plan.classic) {
      const cublasHandle_t classic = classic_handle_locked(device);
      const cudaDataType_t type = cuda_data_type(p.dtype);
      // cublasSetStream drops a user workspace, so the workspace is set after it, on every call.
      SL_CUBLAS_CHECK(cublasSetStream(classic, stream), describe(p, count));
      SL_CUBLAS_CHECK(cublasSetWorkspace(classic, workspace, static_cast<size_t>(kGemmWorkspaceBytes)),
                      describe(p, count));
      SL_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(classic, key.a.op, key.b.op, static_cast<int64_t>(key.m),
                                                    static_cast<int64_t>(key.n), static_cast<int64_t>(key.k), alpha, b,
                                                    type, key.a.ld, key.stride_a, a, type, key.b.ld, key.stride_b,
                                                    beta, c, type, key.ldc, key.stride_c, count, key.compute,
                                                    CUBLAS_GEMM_DEFAULT),
                      describe(p, count));
      continue;
    }
    SL_CUBLAS_CHECK(cublasLtMatmul(handle, plan.desc, alpha, b, plan.a, a, plan.b, beta, c, plan.c, c, plan.c,
                                   &plan.algo, workspace, plan.workspace_bytes, stream),
                    describe(p, count));
  }
}

}  // namespace shardlab::cuda

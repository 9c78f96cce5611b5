// CPU matrix products: batched, broadcasting, any-stride matmul on Eigen's GEMM. f32/f64 operands
// are mapped in place (transpose() views are column-major maps, not copies); bf16/f16 are widened
// to f32 blocks, multiplied with f32 accumulation and rounded once on store.
#include <omp.h>

// GCC 12 reports false -Wmaybe-uninitialized warnings inside Eigen's AVX-512 reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/linalg.h"
#include "core/ops/views.h"
#include "core/strided.h"
#include "core/trace.h"
#include "core/matmul_layout.h"

namespace shardlab::ops {

namespace {

// Per-product work (M*N*K) below which a batch of products is split across threads by product
// rather than letting Eigen split each product (Eigen wants ~50k multiply-adds per thread).
constexpr double kSmallProduct = double(1 << 21);
// Total work below which threads are not worth starting at all.
constexpr double kMinParallelWork = double(1 << 16);
// Elements converted per widening pass below which conversion stays on one thread.
constexpr int64_t kConvertGrain = 1 << 16;
// Largest f32 block (16 MiB) of each widened operand and of the f32 result (bf16/f16 path).
constexpr int64_t kWideBlockFloats = int64_t(1) << 22;

// A matrix operand as Eigen's GEMM reads it without copying: one of its two strides is 1 and the
// other becomes Eigen's outer stride.
struct Layout {
  bool row_major = true;
  int64_t outer = 0;  // stride between rows (row-major) or between columns (column-major)
};

// The Eigen layout of a (rows, cols) matrix with element strides (rs, cs), or false when neither
// stride is 1 (e.g. a stepped slice), which Eigen's GEMM cannot read in place. Size-1 dims place
// no constraint on their stride.
bool eigen_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, Layout& out) {
  if (cols == 1 || cs == 1) {
    out = {true, rows == 1 ? std::max<int64_t>(cols, 1) : rs};
    return true;
  }
  if (rows == 1 || rs == 1) {
    out = {false, cols == 1 ? std::max<int64_t>(rows, 1) : cs};
    return true;
  }
  return false;
}

// C (M, N), row-major with row stride ldc, = A (M, K) @ B (K, N), one Eigen GEMM (Eigen splits it
// across OpenMP threads unless it is called from inside a parallel region).
template <typename T, int AOrder, int BOrder>
void eigen_gemm(const T* a, int64_t a_outer, const T* b, int64_t b_outer, T* c, int64_t ldc, int64_t M, int64_t K,
                int64_t N) {
  using Stride = Eigen::OuterStride<>;
  using AMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, AOrder>;
  using BMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, BOrder>;
  using CMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const AMat, 0, Stride> A(a, M, K, Stride(a_outer));
  Eigen::Map<const BMat, 0, Stride> B(b, K, N, Stride(b_outer));
  Eigen::Map<CMat, 0, Stride> C(c, M, N, Stride(ldc));
  C.noalias() = A * B;
}

template <typename T>
void gemm(const T* a, Layout la, const T* b, Layout lb, T* c, int64_t ldc, int64_t M, int64_t K, int64_t N) {
  constexpr int R = Eigen::RowMajor, C = Eigen::ColMajor;
  if (la.row_major && lb.row_major) eigen_gemm<T, R, R>(a, la.outer, b, lb.outer, c, ldc, M, K, N);
  else if (la.row_major) eigen_gemm<T, R, C>(a, la.outer, b, lb.outer, c, ldc, M, K, N);
  else if (lb.row_major) eigen_gemm<T, C, R>(a, la.outer, b, lb.outer, c, ldc, M, K, N);
  else eigen_gemm<T, C, C>(a, la.outer, b, lb.outer, c, ldc, M, K, N);
}

// n contiguous 16-bit floats -> f32 (and back, rounding to nearest even), vectorised by Eigen.
template <typename T>
void widen_run(const T* src, float* dst, int64_t n) {
  using Src = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<Eigen::ArrayXf>(dst, n) = Eigen::Map<const Src>(src, n).template cast<float>();
}
template <typename T>
void narrow_run(const float* src, T* dst, int64_t n) {
  using Dst = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<Dst>(dst, n) = Eigen::Map<const Eigen::ArrayXf>(src, n).template cast<T>();
}

// Widens a (rows, cols) block with strides (rs, cs) into a dense f32 buffer, in whichever
// orientation reads the source along its unit stride; returns the buffer's layout.
template <typename T>
Layout widen(const T* src, int64_t rows, int64_t cols, int64_t rs, int64_t cs, float* dst) {
  const bool by_column = cs != 1 && rs == 1 && cols > 1;  // e.g. a transpose() view
  const int64_t lines = by_column ? cols : rows, len = by_column ? rows : cols;
  const int64_t line_stride = by_column ? cs : rs, step = by_column ? rs : cs;
  const bool parallel = lines * len >= kConvertGrain && !omp_in_parallel() && lines > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t l = 0; l < lines; ++l) {
    const T* s = src + l * line_stride;
    float* d = dst + l * len;
    if (step == 1) widen_run(s, d, len);
    else for (int64_t k = 0; k < len; ++k) d[k] = static_cast<float>(s[k * step]);
  }
  return by_column ? Layout{false, rows} : Layout{true, cols};
}

// Per-thread f32 scratch that only grows and is never zero-filled. NOTE [16-bit GEMM scratch]:
// re-allocating (and page-faulting) a weight-sized buffer per call cost as much as the widening
// itself, so each thread keeps its scratch; blocking bounds it to 3 * kWideBlockFloats floats.
struct Scratch {
  std::unique_ptr<float[]> data;
  int64_t size = 0;
  float* get(int64_t n) {
    if (n > size) {
      data.reset(new float[static_cast<size_t>(n)]);
      size = n;
    }
    return data.get();
  }
};

// One product C = A @ B for 16-bit floats, in f32 blocks: B in column panels (each widened
// once), A in row blocks (widened once when it fits in one block), C in (rows, panel) tiles that
// are rounded once into c.
template <typename T>
void gemm_16bit(const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t M,
                int64_t K, int64_t N) {
  thread_local Scratch a_scratch, b_scratch, c_scratch;
  const int64_t panel = std::min(N, std::max<int64_t>(16, kWideBlockFloats / K));
  const int64_t block = std::min(M, std::max<int64_t>(16, kWideBlockFloats / std::max(K, panel)));
  float* a_wide = a_scratch.get(block * K);
  float* b_wide = b_scratch.get(K * panel);
  float* c_wide = c_scratch.get(block * panel);
  Layout la;
  if (block == M) la = widen(a, M, K, a_rs, a_cs, a_wide);
  for (int64_t n0 = 0; n0 < N; n0 += panel) {
    const int64_t cols = std::min(panel, N - n0);
    Layout lb = widen(b + n0 * b_cs, K, cols, b_rs, b_cs, b_wide);
    for (int64_t m0 = 0; m0 < M; m0 += block) {
      const int64_t rows = std::min(block, M - m0);
      if (block < M) la = widen(a + m0 * a_rs, rows, K, a_rs, a_cs, a_wide);
      gemm<float>(a_wide, la, b_wide, lb, c_wide, cols, rows, K, cols);
      const bool parallel = rows * cols >= kConvertGrain && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
      for (int64_t r = 0; r < rows; ++r) narrow_run(c_wide + r * cols, c + (m0 + r) * N + n0, cols);
    }
  }
}

// One (M, K) @ (K, N) product into contiguous c, dispatching on the element type.
template <typename T>
void product(const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t M,
             int64_t K, int64_t N) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    Layout la, lb;
    const bool ok = eigen_layout(M, K, a_rs, a_cs, la) && eigen_layout(K, N, b_rs, b_cs, lb);
    SL_CHECK(ok, "matmul: internal error: operand layout not readable by Eigen");  // copied earlier
    gemm<T>(a, la, b, lb, c, N, M, K, N);
  } else {
    gemm_16bit<T>(a, a_rs, a_cs, b, b_rs, b_cs, c, M, K, N);
  }
}

// f32/f64 operands whose matrix strides Eigen cannot read in place are copied once, contiguous.
Tensor eigen_readable(const Tensor& t) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64) return t;  // widened per block anyway
  Layout unused;
  return eigen_layout(t.size(-2), t.size(-1), t.stride(-2), t.stride(-1), unused) ? t : contiguous(t);
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  SL_FORWARD_TO_DEVICE(matmul, a_in.device(), a_in, b_in);
  SL_TRACE_OP("matmul", a_in, b_in);
  check_cpu("matmul", {a_in, b_in});
  const MatmulShapes shapes = matmul_shapes(a_in, b_in);
  const int64_t M = shapes.M, K = shapes.K, N = shapes.N;
  const Shape& b_batch = shapes.b_batch;
  const Shape& batch = shapes.batch;
  const Shape& out_shape = shapes.out;
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device());
  if (out.numel() == 0) return out;
  if (K == 0) {
    fill_(out, 0.0);
    return out;
  }

  const Tensor a = eigen_readable(a_in), b = eigen_readable(b_in);
  const int64_t nbatch = shape_numel(batch);
  dispatch_float(a.dtype(), "matmul", [&]<typename T>() {
    const T* pa = static_cast<const T*>(a.storage()->data());
    const T* pb = static_cast<const T*>(b.storage()->data());
    T* pc = out.data<T>();
    const int64_t a_rs = a.stride(-2), a_cs = a.stride(-1), b_rs = b.stride(-2), b_cs = b.stride(-1);

    // Linear-layer case: b has no real batch, so a's (batch..., M) rows form one tall GEMM.
    int64_t merged_rs = 0;
    if (shape_numel(b_batch) == 1 && rows_collapse(a, merged_rs)) {
      product<T>(pa + a.offset(), merged_rs, a_cs, pb + b.offset(), b_rs, b_cs, pc, nbatch * M, K, N);
      return;
    }

    const Shape a_bs = batch_strides(a, batch), b_bs = batch_strides(b, batch);
    auto one = [&](int64_t i) {
      const T* ai = pa + a.offset() + offset_of(i, batch, a_bs);
      const T* bi = pb + b.offset() + offset_of(i, batch, b_bs);
      product<T>(ai, a_rs, a_cs, bi, b_rs, b_cs, pc + i * M * N, M, K, N);
    };
    // Many or small products: one product per thread (Eigen then stays single-threaded inside,
    // since it sees an active parallel region). Few large ones: Eigen splits each product.
    const double work = double(M) * double(N) * double(K);
    const int threads = omp_get_max_threads();
    const bool over_batch = nbatch > 1 && threads > 1 && !omp_in_parallel() &&
                            (nbatch >= threads || work < kSmallProduct) && work * double(nbatch) >= kMinParallelWork;
    if (over_batch) {
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t i = 0; i < nbatch; ++i) one(i);
    } else {
      for (int64_t i = 0; i < nbatch; ++i) one(i);
    }
  });
  return out;
}

}  // namespace shardlab::ops

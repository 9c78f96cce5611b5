// CPU dequantize-on-the-fly matmul with an NF4 weight: rows of the weight are dequantized a tile at
// a time into a small workspace and multiplied there by Eigen's GEMM (forward x @ W^T, and the
// input gradient dy @ W), so the full-precision weight never exists in memory.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positives inside Eigen
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/nf4.h"
#include "core/ops/views.h"
#include "core/trace.h"

namespace shardlab::ops {

namespace {

// Elements of one dequantized weight tile (1 MiB of f32): large enough for the GEMM to run at full
// speed (64 rows at K = 4096), small next to any real weight.
constexpr int64_t kTileElements = int64_t(1) << 18;

template <typename S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;

// The 2-D weight's (N, K) after checking it, x's last dim against `dim_size`.
std::pair<int64_t, int64_t> check_args(const char* op, const Tensor& x, const Nf4Tensor& w, int64_t which_dim,
                                       const char* what) {
  check_cpu(op, {x});
  check_nf4(op, w);
  SL_CHECK(w.shape.size() == 2, op, ": the NF4 weight must be 2-D (out_features, in_features), got shape ",
           shape_str(w.shape));
  check_float(op, x);
  SL_CHECK(x.dim() >= 1 && x.size(-1) == w.shape[which_dim], op, ": ", what, " of shape ", shape_str(x.shape()),
           " does not match the NF4 weight of shape ", shape_str(w.shape));
  return {w.shape[0], w.shape[1]};
}

// Rows [r0, r0 + rows) of the (N, K) weight dequantized into tile (rows, K), each value rounded to
// T (the compute dtype) and held as S (the GEMM's type), exactly what ops::matmul would read from a
// weight dequantized to T.
template <typename T, typename S>
void dequantize_rows(const Nf4Tensor& w, const float* absmax, int64_t r0, int64_t rows, int64_t K, S* tile) {
  const uint8_t* packed = w.packed.data<uint8_t>();
  const bool parallel = rows * K >= 65536 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = (r0 + r) * K;
    S* out = tile + r * K;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = base + k;
      const uint8_t byte = packed[i / 2];
      const uint8_t code = i % 2 == 0 ? byte >> 4 : byte & 0xF;
      out[k] = static_cast<S>(static_cast<T>(kNf4Code[code] * absmax[i / kNf4Block]));
    }
  }
}

// A contiguous (rows, cols) S copy of t (or t's own data when it already is one), in `buffer`.
template <typename T, typename S>
const S* as_matrix(const Tensor& t, Tensor& buffer) {
  buffer = contiguous(t);
  if constexpr (!std::is_same_v<T, S>) {
    MemTagScope scratch(MemTag::workspace);
    buffer = to_dtype(buffer, dtype_of<S>);
  }
  return buffer.template data<S>();
}

// Runs body(tile, r0, rows) over row tiles of the dequantized weight, then returns the result (M,
// cols) in dtype T: written straight into `out` for f32/f64, through an S buffer for 16-bit floats.
template <typename T, typename S, typename Body>
void tiled(const Nf4Tensor& w, int64_t M, int64_t cols, const Tensor& out, Body&& body) {
  const int64_t N = w.shape[0], K = w.shape[1];
  const int64_t tile_rows = std::clamp<int64_t>(kTileElements / K, 1, N);
  Tensor absmax, tile, acc;
  {
    MemTagScope scratch(MemTag::workspace);
    absmax = nf4_absmax(w);
    tile = Tensor::empty({tile_rows, K}, dtype_of<S>);
    if constexpr (!std::is_same_v<T, S>) acc = Tensor::empty({M, cols}, dtype_of<S>);
  }
  S* result = nullptr;
  if constexpr (std::is_same_v<T, S>) result = out.template data<S>();
  else result = acc.template data<S>();
  for (int64_t r0 = 0; r0 < N; r0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, N - r0);
    dequantize_rows<T, S>(w, absmax.data<float>(), r0, rows, K, tile.template data<S>());
    body(Eigen::Map<const RowMat<S>>(tile.template data<S>(), rows, K), r0, rows, result);
  }
  if constexpr (!std::is_same_v<T, S>) copy_(out, view(acc, out.shape()));
}

}  // namespace

Tensor nf4_linear(const Tensor& x, const Nf4Tensor& w) {
  SL_FORWARD_TO_DEVICE(nf4_linear, x.device(), x, w);
  SL_TRACE_OP("nf4_linear", x);
  const char* op = "nf4_linear";
  const auto [N, K] = check_args(op, x, w, 1, "input");
  Shape out_shape = x.shape();
  out_shape.back() = N;
  Tensor out = Tensor::empty(out_shape, x.dtype());
  const int64_t M = x.numel() / K;
  if (M == 0) return out;
  dispatch_float(x.dtype(), op, [&]<typename T>() {
    using S = acc_t<T>;
    Tensor x_buffer;
    Eigen::Map<const RowMat<S>> X(as_matrix<T, S>(x, x_buffer), M, K);
    tiled<T, S>(w, M, N, out, [&](const auto& tile, int64_t r0, int64_t rows, S* y) {
      // y[:, r0 : r0 + rows] (M, rows) = X (M, K) @ tile^T (K, rows)
      Eigen::Map<RowMat<S>, 0, Stride> Y(y + r0, M, rows, Stride(N));
      Y.noalias() = X * tile.transpose();
    });
  });
  return out;
}

Tensor nf4_linear_backward_input(const Tensor& dy, const Nf4Tensor& w) {
  SL_FORWARD_TO_DEVICE(nf4_linear_backward_input, dy.device(), dy, w);
  SL_TRACE_OP("nf4_linear_backward_input", dy);
  const char* op = "nf4_linear_backward_input";
  const auto [N, K] = check_args(op, dy, w, 0, "output gradient");
  Shape dx_shape = dy.shape();
  dx_shape.back() = K;
  Tensor dx = Tensor::empty(dx_shape, dy.dtype());
  const int64_t M = dy.numel() / N;
  if (M == 0) return dx;
  dispatch_float(dy.dtype(), op, [&]<typename T>() {
    using S = acc_t<T>;
    Tensor dy_buffer;
    Eigen::Map<const RowMat<S>, 0, Stride> DY(as_matrix<T, S>(dy, dy_buffer), M, N, Stride(N));
    tiled<T, S>(w, M, K, dx, [&](const auto& tile, int64_t r0, int64_t rows, S* dx_data) {
      // dx (M, K) += dy[:, r0 : r0 + rows] (M, rows) @ tile (rows, K); the first tile assigns.
      Eigen::Map<RowMat<S>> DX(dx_data, M, K);
      if (r0 == 0) DX.noalias() = DY.middleCols(r0, rows) * tile;
      else DX.noalias() += DY.middleCols(r0, rows) * tile;
    });
  });
  return dx;
}

}  // namespace shardlab::ops

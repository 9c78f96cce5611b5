// The generic element-wise kernel pair behind the copy and element-wise families:
// out[i] = op(in_0[i], ..., in_k[i]) over out's shape, inputs broadcast to it. All-contiguous
// operands take a vectorized grid-stride kernel (16-byte loads and stores); anything else takes a
// strided kernel that recomputes each operand's offset from the linear index (strided_index.cuh).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>

#include "core/tensor.h"
#include "cuda/device.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/op_launch.h"
#include "cuda/strided_index.cuh"

namespace shardlab::cuda {

inline constexpr int kEwThreads = 256;

// V elements of T loaded or stored as one aligned access (16 bytes for the widest operand).
template <typename T, int V>
struct alignas(sizeof(T) * V) VecOf {
  T v[V];
};

// Elements per vector step: 16 bytes of the widest operand (2 for f64, 4 for f32, 8 for bf16).
template <typename Out, typename... In>
constexpr int ew_vec_width() {
  size_t widest = sizeof(Out);
  ((widest = std::max(widest, sizeof(In))), ...);
  return static_cast<int>(16 / widest);
}

// Inputs arrive by value, so each is one vector load; the loop applies op lane by lane.
template <int V, typename Out, typename Op, typename... In>
__device__ __forceinline__ void ew_apply_vec(VecOf<Out, V>& r, const Op& op, VecOf<In, V>... x) {
#pragma unroll
  for (int k = 0; k < V; ++k) r.v[k] = op(x.v[k]...);
}

// Contiguous, same-shape operands whose pointers are all aligned to their VecOf: n / V vector
// steps in a grid-stride loop, then the n % V tail one element per thread.
// No __restrict__: in-place ops (add_, mul_) pass the output as an input too.
template <int V, typename Out, typename Op, typename... In>
__global__ void __launch_bounds__(kEwThreads) ew_contiguous_kernel(int64_t n, Op op, Out* out, const In*... in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = n / V;
  for (int64_t j = first; j < nvec; j += step) {
    VecOf<Out, V> r;
    ew_apply_vec<V>(r, op, reinterpret_cast<const VecOf<In, V>*>(in)[j]...);
    reinterpret_cast<VecOf<Out, V>*>(out)[j] = r;
  }
  for (int64_t i = nvec * V + first; i < n; i += step) out[i] = op(in[i]...);
}

template <typename Out, typename Op, typename... In, size_t... I>
__device__ __forceinline__ void ew_apply_at(std::index_sequence<I...>, const Op& op, Out* out, const int64_t* off,
                                            const In*... in) {
  out[off[0]] = op(in[off[I + 1]]...);  // operand 0 is the output, inputs follow
}

// Any layout: element i's offsets come from the merged (sizes, strides) table. Index is uint32_t
// when numel fits, else int64_t (see StridedIndex::offsets).
template <typename Index, typename Out, typename Op, typename... In>
__global__ void __launch_bounds__(kEwThreads)
    ew_strided_kernel(int64_t n, StridedIndex<1 + sizeof...(In)> index, Op op, Out* out, const In*... in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[1 + sizeof...(In)];
    index.offsets(static_cast<Index>(i), off);
    ew_apply_at(std::index_sequence_for<In...>{}, op, out, off, in...);
  }
}

// A tensor argument of launch_elementwise with its CUDA element type.
template <typename T>
struct Operand {
  const Tensor& t;
};
template <typename T>
Operand<T> operand(const Tensor& t) {
  return {t};
}

// fn.template operator()<U>() with U the unsigned type of `bytes` bytes, for ops that only move
// elements (same-dtype copies, where): one kernel per element size instead of one per dtype.
template <typename Fn>
void dispatch_cuda_bits(int64_t bytes, const char* op, Fn&& fn) {
  switch (bytes) {
    case 1: return fn.template operator()<uint8_t>();
    case 2: return fn.template operator()<uint16_t>();
    case 4: return fn.template operator()<uint32_t>();
    case 8: return fn.template operator()<uint64_t>();
    default: SL_FAIL(op, ": no CUDA kernel moves ", bytes, "-byte elements");
  }
}

// The grid-stride kernels' block cap: 32 blocks of 256 threads per SM (a few waves at full
// occupancy), cached per device.
inline int64_t ew_max_blocks(int device) {
  static std::array<std::atomic<int>, 64> sm_count{};
  SL_CHECK(device >= 0 && device < 64, "cuda device index ", device, " out of range");
  int sms = sm_count[device].load(std::memory_order_relaxed);
  if (sms == 0) {
    SL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    sm_count[device].store(sms, std::memory_order_relaxed);
  }
  return static_cast<int64_t>(sms) * 32;
}

inline bool ew_aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Launches one kernel over merged dims from typed base pointers (element k of operand i at
// base_i + sum_d index_d * stride_i[d]). More than kMaxStridedDims merged dims (rare: a permuted
// view of a 9-d tensor) loop on the host over the outermost dim, one launch per index.
template <typename Out, typename Op, typename... In, size_t... I>
void ew_launch_merged(const char* op_name, const MergedDims<1 + sizeof...(In)>& m, cudaStream_t stream,
                      int64_t max_blocks, const Op& op, Out* out, const std::tuple<const In*...>& in,
                      std::index_sequence<I...> seq) {
  constexpr size_t N = 1 + sizeof...(In);
  if (m.sizes.size() > static_cast<size_t>(kMaxStridedDims)) {
    MergedDims<N> inner;
    inner.sizes.assign(m.sizes.begin() + 1, m.sizes.end());
    for (size_t k = 0; k < N; ++k) inner.strides[k].assign(m.strides[k].begin() + 1, m.strides[k].end());
    for (int64_t i = 0; i < m.sizes[0]; ++i)
      ew_launch_merged(op_name, inner, stream, max_blocks, op, out + i * m.strides[0][0],
                       std::tuple<const In*...>((std::get<I>(in) + i * m.strides[I + 1][0])...), seq);
    return;
  }
  int64_t n = 1;
  for (int64_t s : m.sizes) n *= s;
  constexpr int V = ew_vec_width<Out, In...>();
  const bool aligned = ew_aligned(out, V * sizeof(Out)) && (ew_aligned(std::get<I>(in), V * sizeof(In)) && ...);
  if (is_flat_contiguous(m) && aligned) {
    const int64_t blocks = std::clamp<int64_t>((n / V + kEwThreads - 1) / kEwThreads, 1, max_blocks);
    ew_contiguous_kernel<V><<<static_cast<unsigned>(blocks), kEwThreads, 0, stream>>>(n, op, out, std::get<I>(in)...);
  } else {
    // Unaligned contiguous operands (views at odd offsets) land here too, as one stride-1 dim.
    const StridedIndex<static_cast<int>(N)> index = make_strided_index(m, op_name);
    const int64_t blocks = std::clamp<int64_t>((n + kEwThreads - 1) / kEwThreads, 1, max_blocks);
    if (n <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
      ew_strided_kernel<uint32_t><<<static_cast<unsigned>(blocks), kEwThreads, 0, stream>>>(n, index, op, out,
                                                                                             std::get<I>(in)...);
    else
      ew_strided_kernel<int64_t><<<static_cast<unsigned>(blocks), kEwThreads, 0, stream>>>(n, index, op, out,
                                                                                            std::get<I>(in)...);
  }
  SL_CUDA_CHECK(cudaGetLastError());
}

// out[i] = op(inputs[i]...) over out's shape on out's device, on its compute stream. The caller
// has checked devices, dtypes and that every input broadcasts to out's shape; `op_name` names the
// op in errors. Out and In are the CUDA element types (float, __nv_bfloat16, uint8_t, ...).
template <typename Out, typename Op, typename... In>
void launch_elementwise(const char* op_name, const Tensor& out, const Op& op, Operand<In>... inputs) {
  constexpr size_t N = 1 + sizeof...(In);
  if (out.numel() == 0) return;
  const std::array<std::vector<int64_t>, N> strides = {
      out.strides(), broadcast_strides(inputs.t.shape(), inputs.t.strides(), out.shape())...};
  cudaStream_t stream = op_stream(out.device());
  ew_launch_merged(op_name, merge_dims(out.shape(), strides), stream, ew_max_blocks(out.device().index), op,
                   static_cast<Out*>(out.raw_data()),
                   std::tuple<const In*...>(static_cast<const In*>(inputs.t.raw_data())...),
                   std::index_sequence_for<In...>{});
}

}  // namespace shardlab::cuda

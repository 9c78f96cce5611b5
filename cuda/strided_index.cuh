// The offset calculator of the CUDA element-wise kernels: N strided operands of one logical shape
// (broadcast operands carry stride 0) with their mergeable dims merged on the host, and the
// per-element offsets recomputed from a linear index on the device. Plain C++ apart from the
// __host__ __device__ markers, so host code (and tests/cuda/strided_index_test.cc) can use it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"

#ifdef __CUDACC__
#define SL_HOST_DEVICE __host__ __device__
#else
#define SL_HOST_DEVICE
#endif
#ifdef __CUDA_ARCH__  // device pass only: host compilers warn on an unknown pragma
#define SL_UNROLL _Pragma("unroll")
#else
#define SL_UNROLL
#endif

namespace shardlab::cuda {

// Dims a kernel's StridedIndex holds; launchers split loops with more merged dims on the host.
inline constexpr int kMaxStridedDims = 8;

// Strides of a tensor of `shape`/`strides` as seen through broadcasting to `out_shape`: leading
// new dims and size-1 dims step by 0. The caller has checked that the shapes broadcast.
inline std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                                              const std::vector<int64_t>& out_shape) {
  std::vector<int64_t> out(out_shape.size(), 0);
  const size_t lead = out_shape.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) out[lead + d] = shape[d] == 1 ? 0 : strides[d];
  return out;
}

// A loop shape after merging (outermost dim first), with each operand's strides (in elements).
template <size_t N>
struct MergedDims {
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, N> strides;
};

// Drops size-1 dims and merges dims (d, d+1) when every operand steps over d+1 exactly as one
// step of d (the rule of core/cpu/loops.h), so all-contiguous operands become one dim of stride 1.
// At least one dim is returned (a 0-d or all-ones shape becomes size 1, stride 0).
template <size_t N>
MergedDims<N> merge_dims(const std::vector<int64_t>& shape, const std::array<std::vector<int64_t>, N>& strides) {
  MergedDims<N> m;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !m.sizes.empty();
    for (size_t i = 0; i < N && merge; ++i) merge = m.strides[i].back() == strides[i][d] * shape[d];
    if (merge) {
      m.sizes.back() *= shape[d];
      for (size_t i = 0; i < N; ++i) m.strides[i].back() = strides[i][d];
    } else {
      m.sizes.push_back(shape[d]);
      for (size_t i = 0; i < N; ++i) m.strides[i].push_back(strides[i][d]);
    }
  }
  if (m.sizes.empty()) {
    m.sizes.push_back(1);
    for (size_t i = 0; i < N; ++i) m.strides[i].push_back(0);
  }
  return m;
}

// Whether the merged loop is one dim in which every operand has stride 1 (the contiguous fast path).
template <size_t N>
bool is_flat_contiguous(const MergedDims<N>& m) {
  if (m.sizes.size() != 1) return false;
  for (size_t i = 0; i < N; ++i)
    if (m.strides[i][0] != 1) return false;
  return true;
}

// The kernel-argument form of MergedDims: fixed-size arrays, innermost dim first.
template <int N>
struct StridedIndex {
  int ndim = 1;
  int64_t sizes[kMaxStridedDims] = {};
  int64_t strides[kMaxStridedDims][N] = {};

  // off[i] = element offset of operand i at the row-major linear index `linear` (< numel).
  // Index is uint32_t when numel fits (32-bit division is several times cheaper on the GPU) or
  // int64_t; the outermost dim needs no division since what remains of `linear` is its index.
  template <typename Index>
  SL_HOST_DEVICE void offsets(Index linear, int64_t (&off)[N]) const {
    SL_UNROLL
    for (int i = 0; i < N; ++i) off[i] = 0;
    SL_UNROLL
    for (int d = 0; d < kMaxStridedDims; ++d) {
      if (d == ndim - 1) {
        SL_UNROLL
        for (int i = 0; i < N; ++i) off[i] += static_cast<int64_t>(linear) * strides[d][i];
        break;
      }
      const Index size = static_cast<Index>(sizes[d]);
      const Index q = linear / size;
      const Index r = linear - q * size;
      SL_UNROLL
      for (int i = 0; i < N; ++i) off[i] += static_cast<int64_t>(r) * strides[d][i];
      linear = q;
    }
  }
};

// Packs merged dims (at most kMaxStridedDims) for a kernel; `op` names the caller in the error.
template <size_t N>
StridedIndex<static_cast<int>(N)> make_strided_index(const MergedDims<N>& m, const char* op) {
  static_assert(N >= 1 && N <= 8, "one output and up to seven inputs");
  const int nd = static_cast<int>(m.sizes.size());
  SL_CHECK(nd >= 1 && nd <= kMaxStridedDims, op, ": the CUDA kernel handles at most ", kMaxStridedDims,
           " dims after merging contiguous ones, got ", nd);
  StridedIndex<static_cast<int>(N)> s;
  s.ndim = nd;
  for (int d = 0; d < nd; ++d) {
    s.sizes[d] = m.sizes[nd - 1 - d];
    for (size_t i = 0; i < N; ++i) s.strides[d][i] = m.strides[i][nd - 1 - d];
  }
  return s;
}

}  // namespace shardlab::cuda

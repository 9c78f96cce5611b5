// Deterministic warp and block reductions for the reduce, softmax, cross-entropy and norm kernels:
// a fixed xor butterfly inside each warp and a fixed tree across warps, so a result depends only
// on the values and the block size, never on timing (no atomics).
#pragma once

#include <cuda_runtime.h>

#include <cstring>

namespace shardlab::cuda {

inline constexpr int kWarpSize = 32;

// The value of lane (lane ^ lane_mask), for any trivially copyable T of whole 32-bit words
// (float, double, int64_t, small structs such as a (value, index) pair), one word at a time.
template <typename T>
__device__ inline T shfl_xor(const T& v, int lane_mask) {
  static_assert(sizeof(T) % 4 == 0, "shfl_xor moves whole 32-bit words");
  constexpr int kWords = static_cast<int>(sizeof(T) / 4);
  int words[kWords];
  memcpy(words, &v, sizeof(T));
#pragma unroll
  for (int k = 0; k < kWords; ++k) words[k] = __shfl_xor_sync(0xffffffffu, words[k], lane_mask);
  T out;
  memcpy(&out, words, sizeof(T));
  return out;
}

// Every lane of a full warp gets combine() over the 32 lanes' values. All 32 lanes must call it.
// `combine` must be commutative (lane l computes combine(mine, theirs) while its partner computes
// combine(theirs, mine)); both sides then hold the same bits, so all lanes agree exactly.
template <typename T, typename Combine>
__device__ inline T warp_allreduce(T v, Combine combine) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) v = combine(v, shfl_xor(v, mask));
  return v;
}

// Every thread of the block gets combine() over all threads' values. blockDim.x must be a multiple
// of 32 (at most 1024) and every thread of the block must call it (no early return before it).
// It may be called several times in one kernel: the leading barrier keeps one call's shared
// partials from being overwritten while another warp still reads them.
template <typename T, typename Combine>
__device__ inline T block_allreduce(T v, Combine combine, T identity) {
  __shared__ alignas(16) unsigned char raw[kWarpSize * sizeof(T)];
  T* partial = reinterpret_cast<T*>(raw);
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int warps = static_cast<int>(blockDim.x) / kWarpSize;
  v = warp_allreduce(v, combine);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  // Each warp reduces the per-warp partials itself (the same butterfly on the same inputs), so
  // every thread ends with the identical result without a further broadcast.
  v = lane < warps ? partial[lane] : identity;
  return warp_allreduce(v, combine);
}

struct SumCombine {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

template <typename T>
__device__ inline T block_allreduce_sum(T v) { return block_allreduce(v, SumCombine{}, T(0)); }
template <typename T>
__device__ inline T warp_allreduce_sum(T v) { return warp_allreduce(v, SumCombine{}); }

}  // namespace shardlab::cuda

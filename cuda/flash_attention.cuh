// Private to the attention CUDA files (attention_kernels.cu, flash_attention_general.cu,
// flash_attention_fwd.cu, flash_attention_bwd.cu): the launch parameters every kernel reads, the
// masking rule, the launchers, and the fragment and tile helpers of the tensor-core path (its PTX
// primitives are in flash_attention_mma.cuh).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "cuda/flash_attention_mma.cuh"

namespace shardlab::cuda::attention {

// One (B, H, rows, D) operand in global memory with unit stride along D; strides in elements.
struct Operand {
  void* ptr = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
};

// Everything a kernel needs about one call. Sizes fit in int (checked on the host); element
// offsets are computed in int64.
struct Params {
  int B = 0, Hq = 0, Hkv = 0, T = 0, S = 0, D = 0;
  int group = 1;    // q-heads per kv-head
  int offset = 0;   // causal: query i sees keys j <= i + offset (offset = S - T)
  bool causal = true;
  double scale = 1.0;
  Operand q, k, v;          // (B, Hq, T, D), (B, Hkv, S, D), (B, Hkv, S, D)
  Operand out, dout;        // (B, Hq, T, D): the forward's output (written by fwd, read by bwd)
  void* lse = nullptr;      // (B, Hq, T) contiguous, f32 (f64 for f64)
  void* delta = nullptr;    // (B, Hq, T) contiguous workspace of the backward: rowsum(dout * out)
  void* dq = nullptr;       // (B, Hq, T, D) contiguous
  void* dk = nullptr;       // (B, Hkv, S, D) contiguous
  void* dv = nullptr;
  const void* seg = nullptr;  // (B, T) contiguous segment ids, or null
  bool seg64 = false;         // i64 ids (else i32)
  int device = 0;             // CUDA device index (host side: shared-memory limits)
};

// Row `row` of head h of batch b of an operand (int64 offsets).
template <typename T>
__device__ __forceinline__ T* row_at(const Operand& o, int b, int h, int row) {
  return static_cast<T*>(o.ptr) + (b * o.sb + h * o.sh + row * o.st);
}

// Segment id of row i of batch b (T == S whenever segment ids are given).
__device__ __forceinline__ long long segment_id(const Params& p, int b, int i) {
  const int64_t at = static_cast<int64_t>(b) * p.T + i;
  return p.seg64 ? static_cast<const long long*>(p.seg)[at] : static_cast<const int*>(p.seg)[at];
}

// Whether query i may attend to key j (both in range): the causal rule with the diagonal aligned
// to the end of the keys (NOTE [attention rows without keys] in core/cpu/attention.cc), and equal
// segment ids when packing.
__device__ __forceinline__ bool visible(const Params& p, int i, int j, long long seg_i, long long seg_j) {
  return (!p.causal || j <= i + p.offset) && (p.seg == nullptr || seg_i == seg_j);
}

// One past the last key that any query below `i_end` may see.
__device__ __forceinline__ int key_end(const Params& p, int i_end) {
  if (!p.causal) return p.S;
  const int e = i_end + p.offset;
  return e < 0 ? 0 : (e > p.S ? p.S : e);
}

// The first query that may see key j0 (causal), else 0.
__device__ __forceinline__ int query_begin(const Params& p, int j0) {
  if (!p.causal) return 0;
  const int b = j0 - p.offset;
  return b < 0 ? 0 : (b > p.T ? p.T : b);
}

// ---- launchers (host) ----
// General path, every float dtype and head dim (shared-memory tiles, scalar FMAs).
void fwd_general(const Params& p, DType dtype, cudaStream_t stream);
void bwd_general(const Params& p, DType dtype, cudaStream_t stream);
// delta = rowsum(dout * out) in the accumulation dtype; the first step of both backward paths.
void bwd_delta(const Params& p, DType dtype, cudaStream_t stream);
// Tensor-core path: bf16/f16, D in {64, 128}, 16-byte aligned rows (tc_supported() says).
bool tc_supported(DType dtype, int head_dim);
void fwd_tc(const Params& p, DType dtype, cudaStream_t stream);
void bwd_tc(const Params& p, DType dtype, cudaStream_t stream);

// Sets the dynamic shared memory limit of `kernel` (needed above 48 KiB) and checks it fits.
void allow_shared_memory(const void* kernel, int64_t bytes, const char* op, int device);

// ---- tile and fragment helpers of the tensor-core path ----
namespace tc {

constexpr double kLog2e = 1.4426950408889634;  // scores are exponentiated as exp2(x * log2 e)
constexpr float kLn2 = 0.69314718055994531f;

// Two floats rounded to T and packed, `lo` in the low half (the lower column of a fragment pair).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// The A fragments of a 16x16 product whose accumulators (two 16x8 tiles c0, c1 side by side)
// are the left operand of the next product: the FlashAttention register reuse of P and dS.
template <typename T>
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}

// Lane offsets (row, col) into a row-major shared tile for the three ldmatrix.x4 patterns:
//   A (16 rows x 16 k) from a [row][k] tile: registers = a[0..3]
__device__ __forceinline__ int a_row(int lane) { return lane & 15; }
__device__ __forceinline__ int a_col(int lane) { return (lane >> 4) * 8; }
//   B for two n-tiles (16 n x 16 k) from a [n][k] tile (K in Q K^T): {r0, r1} n-tile 0, {r2, r3} n-tile 1
__device__ __forceinline__ int bn_row(int lane) { return (lane & 7) + (lane >> 4) * 8; }
__device__ __forceinline__ int bn_col(int lane) { return ((lane >> 3) & 1) * 8; }
//   B for two n-tiles (16 k x 16 n) from a [k][n] tile with .trans (V in P V): same register split
__device__ __forceinline__ int bt_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
__device__ __forceinline__ int bt_col(int lane) { return (lane >> 4) * 8; }

// Copies rows [0, valid) of a (ROWS, D) tile from global (row stride `stride` elements) into
// shared memory with row stride D + 8 (the 16-byte pad puts the 8 rows an ldmatrix reads in
// distinct banks); rows past `valid` are zeroed. Every thread of the block takes part.
template <int ROWS, int D, int THREADS, typename T>
__device__ __forceinline__ void load_tile(T* smem, const T* gmem, int64_t stride, int valid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert((ROWS * kChunks) % THREADS == 0, "tile chunks must divide evenly among the threads");
#pragma unroll
  for (int it = 0; it < ROWS * kChunks / THREADS; ++it) {
    const int c = it * THREADS + static_cast<int>(threadIdx.x);
    const int r = c / kChunks, col = (c % kChunks) * 8;
    T* dst = smem + r * (D + 8) + col;
    if (r < valid) cp_async16(dst, gmem + r * stride + col);
    else *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
  }
}

// Segment ids of rows [row0, row0 + valid) (valid <= ROWS <= blockDim.x) copied raw into `slot`
// (8 bytes per row for i64 ids, 4 for i32); read back with segment_at. Nothing when not packing.
template <int ROWS>
__device__ __forceinline__ void load_segments(unsigned char* slot, const Params& p, int b, int row0, int valid) {
  const int r = threadIdx.x;
  if (p.seg == nullptr || r >= ROWS || r >= valid) return;
  const int64_t at = int64_t{b} * p.T + row0 + r;
  if (p.seg64) cp_async8(slot + r * 8, static_cast<const long long*>(p.seg) + at);
  else cp_async4(slot + r * 4, static_cast<const int*>(p.seg) + at);
}
__device__ __forceinline__ long long segment_at(const unsigned char* slot, int r, bool seg64) {
  return seg64 ? reinterpret_cast<const long long*>(slot)[r] : reinterpret_cast<const int*>(slot)[r];
}

}  // namespace tc

}  // namespace shardlab::cuda::attention

// The general CUDA attention path: every float dtype (f32, f64, bf16, f16, arithmetic in f32, f64
// for f64) and any head dim. FlashAttention-2's blocking with scalar FMAs on shared-memory tiles,
// the GPU reference the tensor-core path (flash_attention_fwd.cu / _bwd.cu) is tested against.
//   forward: one block per (query tile, head, batch); online softmax over key tiles.
//   backward: delta = rowsum(dO * O); dK/dV by one block per (key tile, kv-head, batch) looping
//   over the q-heads of its group and their query tiles; dQ by one block per (query tile, head,
//   batch) looping over key tiles. Each output element has one owner thread: no atomics, so the
//   gradients are bit-identical run to run.
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/flash_attention.cuh"

namespace shardlab::cuda::attention {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
// Tile sizes tried, largest first, until the shared memory fits (at most 32: one lane per key).
constexpr int kTiles[] = {32, 16, 8};

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}
template <typename A>
__device__ __forceinline__ A acc_exp(A x) {
  if constexpr (std::is_same_v<A, double>) return exp(x);
  else return expf(x);
}
template <typename A>
__device__ __forceinline__ A acc_log(A x) {
  if constexpr (std::is_same_v<A, double>) return log(x);
  else return logf(x);
}
template <typename A>
__device__ __forceinline__ A warp_max(A x) {
  for (int off = 16; off > 0; off /= 2) {
    const A y = __shfl_xor_sync(0xffffffffu, x, off);
    x = y > x ? y : x;
  }
  return x;
}
template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Hands out 16-byte aligned pieces of the dynamic shared memory; with base 0 (on the host) it
// only adds up the size, so host and kernel share one layout function.
struct Carver {
  uintptr_t base = 0;
  size_t used = 0;
  template <typename X>
  __host__ __device__ X* take(int64_t n) {
    used = (used + 15) / 16 * 16;
    X* p = reinterpret_cast<X*>(base + used);
    used += static_cast<size_t>(n) * sizeof(X);
    return p;
  }
};

// The tiles of one block. Rows of q, k, v, dout tiles are padded to D + 1 so that threads
// reading different rows at the same column hit different banks.
template <typename A>
struct Smem {
  long long *qseg, *kseg;        // (tile,) segment ids of the query / key rows
  A *q, *k, *v, *dout;           // (tile, D + 1); q is scaled
  A *acc0, *acc1;                // (tile, D): O (fwd), dK and dV (dK/dV), dQ (dQ)
  A *s0, *s1;                    // (tile, tile + 1): scores / P, dS
  A *r0, *r1, *r2;               // (tile,): m, l, alpha (fwd); lse, delta (bwd)
  __host__ __device__ void carve(Carver& c, int tile, int D, bool bwd) {
    const int ld = D + 1;
    qseg = c.take<long long>(tile);
    kseg = c.take<long long>(tile);
    q = c.take<A>(int64_t{tile} * ld);
    k = c.take<A>(int64_t{tile} * ld);
    v = c.take<A>(int64_t{tile} * ld);
    dout = bwd ? c.take<A>(int64_t{tile} * ld) : nullptr;
    acc0 = c.take<A>(int64_t{tile} * D);
    acc1 = bwd ? c.take<A>(int64_t{tile} * D) : nullptr;
    s0 = c.take<A>(int64_t{tile} * (tile + 1));
    s1 = bwd ? c.take<A>(int64_t{tile} * (tile + 1)) : nullptr;
    r0 = c.take<A>(tile);
    r1 = c.take<A>(tile);
    r2 = c.take<A>(tile);
  }
};

template <typename A>
size_t smem_bytes(int tile, int D, bool bwd) {
  Carver c;
  Smem<A> s;
  s.carve(c, tile, D, bwd);
  return c.used;
}

template <typename A>
__device__ Smem<A> carve_smem(unsigned char* raw, int tile, int D, bool bwd) {
  Carver c{reinterpret_cast<uintptr_t>(raw)};
  Smem<A> s;
  s.carve(c, tile, D, bwd);
  return s;
}

// Rows [0, valid) of a (tile, D) operand tile into shared memory (times `mul`), zeros below.
template <typename T, typename A>
__device__ void load_rows(A* dst, const Operand& o, int b, int h, int row0, int valid, int tile, int D, A mul) {
  const int ld = D + 1;
  for (int e = threadIdx.x; e < tile * D; e += kThreads) {
    const int r = e / D, d = e % D;
    dst[r * ld + d] = r < valid ? to_acc(row_at<const T>(o, b, h, row0 + r)[d]) * mul : A(0);
  }
}

__device__ void load_segments(long long* dst, const Params& p, int b, int row0, int valid, int tile) {
  for (int r = threadIdx.x; r < tile; r += kThreads)
    dst[r] = (p.seg != nullptr && r < valid) ? segment_id(p, b, row0 + r) : 0;
}

// ---- forward ----
template <typename T>
__global__ void __launch_bounds__(kThreads) fwd_general_kernel(Params p, int tile) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<A> sm = carve_smem<A>(smem_raw, tile, p.D, false);
  const int D = p.D, ld = D + 1, sld = tile + 1;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  // Block order: the last query tiles (the most keys under a causal mask) first.
  const int q_tiles = (p.T + tile - 1) / tile;
  const int64_t heads = int64_t{p.B} * p.Hq;
  const int qt = q_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int bh = static_cast<int>(blockIdx.x % heads), b = bh / p.Hq, h = bh % p.Hq, kvh = h / p.group;
  const int i0 = qt * tile, bq = min(tile, p.T - i0);
  A* o = sm.acc0;                   // (tile, D) unnormalised output
  A *m = sm.r0, *l = sm.r1, *alpha = sm.r2;

  load_rows<T, A>(sm.q, p.q, b, h, i0, bq, tile, D, static_cast<A>(p.scale));
  load_segments(sm.qseg, p, b, i0, bq, tile);
  for (int e = tid; e < tile * D; e += kThreads) o[e] = A(0);
  for (int r = tid; r < tile; r += kThreads) {
    m[r] = neg_inf<A>();
    l[r] = A(0);
  }
  const int kend = key_end(p, i0 + bq);
  for (int j0 = 0; j0 < kend; j0 += tile) {
    const int bk = min(tile, kend - j0);
    __syncthreads();  // the previous key tile is no longer read
    load_rows<T, A>(sm.k, p.k, b, kvh, j0, bk, tile, D, A(1));
    load_rows<T, A>(sm.v, p.v, b, kvh, j0, bk, tile, D, A(1));
    load_segments(sm.kseg, p, b, j0, bk, tile);
    __syncthreads();
    // Scaled scores, -inf where masked.
    for (int e = tid; e < tile * tile; e += kThreads) {
      const int r = e / tile, c = e % tile;
      A s = neg_inf<A>();
      if (r < bq && c < bk && visible(p, i0 + r, j0 + c, sm.qseg[r], sm.kseg[c])) {
        const A *qr = sm.q + r * ld, *kr = sm.k + c * ld;
        A dot = 0;
        for (int d = 0; d < D; ++d) dot += qr[d] * kr[d];
        s = dot;
      }
      sm.s0[r * sld + c] = s;
    }
    __syncthreads();
    // Online softmax, one warp per row: new max, rescale factor, probabilities, running sum.
    for (int r = warp; r < bq; r += kWarps) {
      const A s = lane < bk ? sm.s0[r * sld + lane] : neg_inf<A>();
      const A m_old = m[r];
      const A tile_max = warp_max(s);
      const A m_new = tile_max > m_old ? tile_max : m_old;
      A prob = 0, a = 1;
      if (m_new != neg_inf<A>()) {  // else nothing visible to this row yet
        prob = acc_exp(s - m_new);
        a = acc_exp(m_old - m_new);
      }
      const A sum = warp_sum(prob);
      if (lane < tile) sm.s0[r * sld + lane] = prob;
      if (lane == 0) {
        l[r] = l[r] * a + sum;
        m[r] = m_new;
        alpha[r] = a;
      }
    }
    __syncthreads();
    for (int e = tid; e < bq * D; e += kThreads) {
      const int r = e / D, d = e % D;
      const A* pr = sm.s0 + r * sld;
      A acc = o[e] * alpha[r];
      for (int c = 0; c < bk; ++c) acc += pr[c] * sm.v[c * ld + d];
      o[e] = acc;
    }
  }
  __syncthreads();
  // NOTE [attention rows without keys]: out 0 and lse -inf where nothing was visible.
  for (int e = tid; e < bq * D; e += kThreads) {
    const int r = e / D, d = e % D;
    const A inv = l[r] == A(0) ? A(0) : A(1) / l[r];
    row_at<T>(p.out, b, h, i0 + r)[d] = from_acc<T>(o[e] * inv);
  }
  A* lse = static_cast<A*>(p.lse) + (int64_t{bh} * p.T + i0);
  for (int r = tid; r < bq; r += kThreads) lse[r] = l[r] == A(0) ? neg_inf<A>() : m[r] + acc_log(l[r]);
}

// ---- backward ----
// P and dS of the (query tile, key tile) pair in shared memory: P = exp(q.k - lse) where visible,
// dS = P * (dO.v - delta). Query rows in s0/s1 rows, keys in columns.
template <typename A>
__device__ void probs_and_dscores(const Params& p, const Smem<A>& sm, int tile, int i0, int bq, int j0, int bk) {
  const int D = p.D, ld = D + 1, sld = tile + 1;
  for (int e = threadIdx.x; e < tile * tile; e += kThreads) {
    const int r = e / tile, c = e % tile;
    A prob = 0, ds = 0;
    const A lse = sm.r0[r];
    if (r < bq && c < bk && lse != neg_inf<A>() && visible(p, i0 + r, j0 + c, sm.qseg[r], sm.kseg[c])) {
      const A *qr = sm.q + r * ld, *kr = sm.k + c * ld, *gr = sm.dout + r * ld, *vr = sm.v + c * ld;
      A s = 0, dp = 0;
      for (int d = 0; d < D; ++d) {
        s += qr[d] * kr[d];
        dp += gr[d] * vr[d];
      }
      prob = acc_exp(s - lse);
      ds = prob * (dp - sm.r1[r]);
    }
    sm.s0[r * sld + c] = prob;
    sm.s1[r * sld + c] = ds;
  }
}

// Query-side rows of a backward tile: scaled q, dout, lse, delta, segment ids.
template <typename T, typename A>
__device__ void load_query_side(const Params& p, const Smem<A>& sm, int tile, int b, int h, int i0, int bq) {
  load_rows<T, A>(sm.q, p.q, b, h, i0, bq, tile, p.D, static_cast<A>(p.scale));
  load_rows<T, A>(sm.dout, p.dout, b, h, i0, bq, tile, p.D, A(1));
  load_segments(sm.qseg, p, b, i0, bq, tile);
  const int64_t row0 = (int64_t{b} * p.Hq + h) * p.T + i0;
  for (int r = threadIdx.x; r < tile; r += kThreads) {
    sm.r0[r] = r < bq ? static_cast<const A*>(p.lse)[row0 + r] : neg_inf<A>();
    sm.r1[r] = r < bq ? static_cast<const A*>(p.delta)[row0 + r] : A(0);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_dkdv_general_kernel(Params p, int tile) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<A> sm = carve_smem<A>(smem_raw, tile, p.D, true);
  const int D = p.D, ld = D + 1, sld = tile + 1;
  // Block order: the first key tiles (seen by the most queries under a causal mask) first.
  const int64_t kv_heads = int64_t{p.B} * p.Hkv;
  const int kt = static_cast<int>(blockIdx.x / kv_heads);
  const int bkv = static_cast<int>(blockIdx.x % kv_heads), b = bkv / p.Hkv, kvh = bkv % p.Hkv;
  const int j0 = kt * tile, bk = min(tile, p.S - j0);
  A *dk = sm.acc0, *dv = sm.acc1;  // (tile, D) accumulators of this key tile

  load_rows<T, A>(sm.k, p.k, b, kvh, j0, bk, tile, D, A(1));
  load_rows<T, A>(sm.v, p.v, b, kvh, j0, bk, tile, D, A(1));
  load_segments(sm.kseg, p, b, j0, bk, tile);
  for (int e = threadIdx.x; e < tile * D; e += kThreads) dk[e] = dv[e] = A(0);
  const int first_tile_row = query_begin(p, j0) / tile * tile;
  for (int gi = 0; gi < p.group; ++gi) {
    const int h = kvh * p.group + gi;
    for (int i0 = first_tile_row; i0 < p.T; i0 += tile) {
      const int bq = min(tile, p.T - i0);
      __syncthreads();  // the previous query tile is no longer read
      load_query_side<T, A>(p, sm, tile, b, h, i0, bq);
      __syncthreads();
      probs_and_dscores(p, sm, tile, i0, bq, j0, bk);
      __syncthreads();
      // dV += P^T dO, dK += dS^T (q * scale); thread e owns element e of both for the whole loop.
      for (int e = threadIdx.x; e < bk * D; e += kThreads) {
        const int c = e / D, d = e % D;
        A gv = dv[e], gk = dk[e];
        for (int r = 0; r < bq; ++r) {
          gv += sm.s0[r * sld + c] * sm.dout[r * ld + d];
          gk += sm.s1[r * sld + c] * sm.q[r * ld + d];
        }
        dv[e] = gv;
        dk[e] = gk;
      }
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < bk * D; e += kThreads) {
    const int c = e / D, d = e % D;
    const int64_t at = ((int64_t{b} * p.Hkv + kvh) * p.S + j0 + c) * D + d;
    static_cast<T*>(p.dk)[at] = from_acc<T>(dk[e]);
    static_cast<T*>(p.dv)[at] = from_acc<T>(dv[e]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_dq_general_kernel(Params p, int tile) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const Smem<A> sm = carve_smem<A>(smem_raw, tile, p.D, true);
  const int D = p.D, ld = D + 1, sld = tile + 1;
  const int q_tiles = (p.T + tile - 1) / tile;
  const int64_t heads = int64_t{p.B} * p.Hq;
  const int qt = q_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int bh = static_cast<int>(blockIdx.x % heads), b = bh / p.Hq, h = bh % p.Hq, kvh = h / p.group;
  const int i0 = qt * tile, bq = min(tile, p.T - i0);
  A* dq = sm.acc0;  // (tile, D)

  load_query_side<T, A>(p, sm, tile, b, h, i0, bq);
  for (int e = threadIdx.x; e < tile * D; e += kThreads) dq[e] = A(0);
  const int kend = key_end(p, i0 + bq);
  for (int j0 = 0; j0 < kend; j0 += tile) {
    const int bk = min(tile, kend - j0);
    __syncthreads();
    load_rows<T, A>(sm.k, p.k, b, kvh, j0, bk, tile, D, A(1));
    load_rows<T, A>(sm.v, p.v, b, kvh, j0, bk, tile, D, A(1));
    load_segments(sm.kseg, p, b, j0, bk, tile);
    __syncthreads();
    probs_and_dscores(p, sm, tile, i0, bq, j0, bk);
    __syncthreads();
    for (int e = threadIdx.x; e < bq * D; e += kThreads) {  // dQ += dS K
      const int r = e / D, d = e % D;
      const A* dsr = sm.s1 + r * sld;
      A acc = dq[e];
      for (int c = 0; c < bk; ++c) acc += dsr[c] * sm.k[c * ld + d];
      dq[e] = acc;
    }
  }
  __syncthreads();
  const A scale = static_cast<A>(p.scale);
  for (int e = threadIdx.x; e < bq * D; e += kThreads) {
    const int r = e / D, d = e % D;
    static_cast<T*>(p.dq)[((int64_t{bh} * p.T) + i0 + r) * D + d] = from_acc<T>(dq[e] * scale);
  }
}

// delta (B * Hq * T,) = rowsum(dout * out), one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads) delta_kernel(Params p) {
  using A = acc_t<T>;
  const int64_t row = int64_t{blockIdx.x} * kWarps + threadIdx.x / 32;
  if (row >= int64_t{p.B} * p.Hq * p.T) return;
  const int lane = threadIdx.x % 32;
  const int i = static_cast<int>(row % p.T);
  const int bh = static_cast<int>(row / p.T), b = bh / p.Hq, h = bh % p.Hq;
  const T* o = row_at<const T>(p.out, b, h, i);
  const T* g = row_at<const T>(p.dout, b, h, i);
  A s = 0;
  for (int d = lane; d < p.D; d += 32) s += to_acc(g[d]) * to_acc(o[d]);
  s = warp_sum(s);
  if (lane == 0) static_cast<A*>(p.delta)[row] = s;
}

int optin_shared_memory(int device) {
  int bytes = 0;
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

// The largest tile whose shared memory fits the device.
template <typename A>
int pick_tile(const Params& p, bool bwd, const char* op) {
  const int64_t limit = optin_shared_memory(p.device);
  for (int tile : kTiles)
    if (static_cast<int64_t>(smem_bytes<A>(tile, p.D, bwd)) <= limit) return tile;
  SL_FAIL(op, ": head dim ", p.D, " needs ", smem_bytes<A>(kTiles[2], p.D, bwd),
          " bytes of shared memory per block even with ", kTiles[2], "-row tiles; the GPU allows ", limit);
}

unsigned grid_of(int64_t blocks, const char* op) {
  SL_CHECK(blocks >= 1 && blocks <= 0x7fffffff, op, ": ", blocks, " blocks exceed CUDA's grid limit");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void allow_shared_memory(const void* kernel, int64_t bytes, const char* op, int device) {
  const int64_t limit = optin_shared_memory(device);
  SL_CHECK(bytes <= limit, op, ": a block needs ", bytes, " bytes of shared memory, the GPU allows ", limit);
  if (bytes > 48 * 1024)
    SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

void fwd_general(const Params& p, DType dtype, cudaStream_t stream) {
  const char* op = "attention_fwd";
  dispatch_cuda_float(dtype, op, [&]<typename T>() {
    using A = acc_t<T>;
    const int tile = pick_tile<A>(p, false, op);
    const int64_t bytes = smem_bytes<A>(tile, p.D, false);
    allow_shared_memory(reinterpret_cast<const void*>(&fwd_general_kernel<T>), bytes, op, p.device);
    const int64_t blocks = int64_t{(p.T + tile - 1) / tile} * p.B * p.Hq;
    fwd_general_kernel<T><<<grid_of(blocks, op), kThreads, bytes, stream>>>(p, tile);
    SL_CUDA_CHECK(cudaGetLastError());
  });
}

void bwd_delta(const Params& p, DType dtype, cudaStream_t stream) {
  dispatch_cuda_float(dtype, "attention_bwd", [&]<typename T>() {
    const int64_t rows = int64_t{p.B} * p.Hq * p.T;
    delta_kernel<T><<<grid_of((rows + kWarps - 1) / kWarps, "attention_bwd"), kThreads, 0, stream>>>(p);
    SL_CUDA_CHECK(cudaGetLastError());
  });
}

void bwd_general(const Params& p, DType dtype, cudaStream_t stream) {
  const char* op = "attention_bwd";
  dispatch_cuda_float(dtype, op, [&]<typename T>() {
    using A = acc_t<T>;
    const int tile = pick_tile<A>(p, true, op);
    const int64_t bytes = smem_bytes<A>(tile, p.D, true);
    if (p.S > 0) {
      allow_shared_memory(reinterpret_cast<const void*>(&bwd_dkdv_general_kernel<T>), bytes, op, p.device);
      const int64_t blocks = int64_t{(p.S + tile - 1) / tile} * p.B * p.Hkv;
      bwd_dkdv_general_kernel<T><<<grid_of(blocks, op), kThreads, bytes, stream>>>(p, tile);
      SL_CUDA_CHECK(cudaGetLastError());
    }
    allow_shared_memory(reinterpret_cast<const void*>(&bwd_dq_general_kernel<T>), bytes, op, p.device);
    const int64_t blocks = int64_t{(p.T + tile - 1) / tile} * p.B * p.Hq;
    bwd_dq_general_kernel<T><<<grid_of(blocks, op), kThreads, bytes, stream>>>(p, tile);
    SL_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace shardlab::cuda::attention

// The tensor-core attention backward for bf16/f16 with head dim 64 or 128 (FlashAttention-2's
// recompute-from-lse with mma.sync), deterministic: two kernels and no atomics.
//   dK/dV: one block of 4 warps per (64-key tile, kv-head, batch[, head split]); each warp owns 16
//     keys and keeps their dK and dV (16 x D each, f32) in registers while it streams 32-row tiles
//     of q and dO of every q-head of its group through double-buffered shared memory. It works on
//     transposed products so that P^T and dS^T come out of the accumulators with key rows, ready
//     to be the A operand of dV += P^T dO and dK += dS^T q.
//     With few blocks (small batch) the q-heads of a group are split over several blocks that
//     write f32 partials, summed in split order by a second kernel: still deterministic.
//   dQ: one block per (64-query tile, head, batch), each warp 16 query rows with dQ in registers,
//     streaming 64-key tiles of K and V.
// Both recompute P = exp2(q.k * scale * log2 e - lse * log2 e) and dS = P (dO.v - delta).
#include <climits>
#include <cmath>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "core/tensor.h"
#include "cuda/device.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/flash_attention.cuh"

namespace shardlab::cuda::attention {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kKvKeys = kWarps * 16;  // keys per dK/dV block
constexpr int kKvRows = 32;           // query rows per step of the dK/dV loop
constexpr int kQRows = kWarps * 16;   // query rows per dQ block
constexpr int kQKeys = 64;            // keys per step of the dQ loop
// Per-row scalars of one dK/dV stage, in bytes: lse (f32), delta (f32), segment id (8 bytes).
constexpr int kRowLse = 0, kRowDelta = 4 * kKvRows, kRowSeg = 8 * kKvRows, kRowBytes = 16 * kKvRows;

// Shared memory of the dK/dV kernel in 16-bit elements: K and V (kKvKeys, D + 8), then two stages
// of q and of dO (kKvRows, D + 8), then two stages of per-row scalars.
template <int D>
struct DkdvSmem {
  static constexpr int kLd = D + 8;
  static constexpr int kK = 0;
  static constexpr int kV = kK + kKvKeys * kLd;
  static constexpr int kQ = kV + kKvKeys * kLd;
  static constexpr int kDO = kQ + 2 * kKvRows * kLd;
  static constexpr int kRowsBytes = (kDO + 2 * kKvRows * kLd) * 2;
  static constexpr int kBytes = kRowsBytes + 2 * kRowBytes;
};

// Shared memory of the dQ kernel: q and dO (kQRows, D + 8), two stages of K and of V (kQKeys,
// D + 8), two stages of key segment ids.
template <int D>
struct DqSmem {
  static constexpr int kLd = D + 8;
  static constexpr int kQ = 0;
  static constexpr int kDO = kQ + kQRows * kLd;
  static constexpr int kK = kDO + kQRows * kLd;
  static constexpr int kV = kK + 2 * kQKeys * kLd;
  static constexpr int kSegBytes = (kV + 2 * kQKeys * kLd) * 2;
  static constexpr int kBytes = kSegBytes + 2 * kQKeys * 8;
};

// lse in log2 units; rows without keys (lse -inf) and padding rows get +inf, so P = exp2(x - inf) = 0.
__device__ __forceinline__ float lse_log2(float lse) {
  return lse == -INFINITY ? INFINITY : lse * static_cast<float>(tc::kLog2e);
}

// Min and max over the block of values each thread holds (or LLONG_MAX / LLONG_MIN for none);
// `red` holds 2 * kWarps values. Contains a barrier.
__device__ void block_range(long long lo, long long hi, long long* red, long long& out_lo, long long& out_hi) {
  for (int off = 16; off > 0; off /= 2) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) red[warp] = lo, red[kWarps + warp] = hi;
  __syncthreads();
  out_lo = LLONG_MAX;
  out_hi = LLONG_MIN;
  for (int w = 0; w < kWarps; ++w) out_lo = min(out_lo, red[w]), out_hi = max(out_hi, red[kWarps + w]);
}

// ---- dK / dV ----
// ws_k/ws_v: (B, Hkv, splits, S, D) f32 partials when kPartial, else dk/dv are written directly.
template <typename T, int D, bool kPartial>
__global__ void __launch_bounds__(kThreads, 2) bwd_dkdv_tc_kernel(Params p, float* ws_k, float* ws_v, int splits) {
  using L = DkdvSmem<D>;
  constexpr int kLd = L::kLd, kDTiles = D / 8, kDSteps = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  __shared__ long long red[2 * kWarps];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  // Block order: key tile 0 (seen by the most queries under a causal mask) first.
  const int64_t per_tile = int64_t{p.B} * p.Hkv * splits;
  const int kt = static_cast<int>(blockIdx.x / per_tile);
  const int rest = static_cast<int>(blockIdx.x % per_tile);
  const int split = rest % splits, bkv = rest / splits, b = bkv / p.Hkv, kvh = bkv % p.Hkv;
  const int heads = p.group / splits, h_first = kvh * p.group + split * heads;
  const int j0 = kt * kKvKeys, bk = min(kKvKeys, p.S - j0);
  const int first_qt = query_begin(p, j0) / kKvRows;
  const int q_tiles = (p.T + kKvRows - 1) / kKvRows - first_qt;
  const int items = heads * q_tiles;  // (q-head, query tile) steps of this block
  const bool has_seg = p.seg != nullptr;

  auto load_q = [&](int item, int stage) {
    const int h = h_first + item / q_tiles, i0 = (first_qt + item % q_tiles) * kKvRows;
    const int valid = min(kKvRows, p.T - i0);
    tc::load_tile<kKvRows, D, kThreads>(smem + L::kQ + stage * kKvRows * kLd, row_at<const T>(p.q, b, h, i0), p.q.st,
                                        valid);
    tc::load_tile<kKvRows, D, kThreads>(smem + L::kDO + stage * kKvRows * kLd, row_at<const T>(p.dout, b, h, i0),
                                        p.dout.st, valid);
    unsigned char* rows = smem_raw + L::kRowsBytes + stage * kRowBytes;
    if (tid < kKvRows) {
      const int64_t at = (int64_t{b} * p.Hq + h) * p.T + i0 + tid;
      if (tid < valid) {
        tc::cp_async4(rows + kRowLse + 4 * tid, static_cast<const float*>(p.lse) + at);
        tc::cp_async4(rows + kRowDelta + 4 * tid, static_cast<const float*>(p.delta) + at);
      } else {  // padding rows: no probability, no gradient
        reinterpret_cast<float*>(rows + kRowLse)[tid] = -INFINITY;
        reinterpret_cast<float*>(rows + kRowDelta)[tid] = 0.f;
      }
    }
    tc::load_segments<kKvRows>(rows + kRowSeg, p, b, i0, valid);
  };

  // K and V of this block's keys, then the first q/dO step.
  tc::load_tile<kKvKeys, D, kThreads>(smem + L::kK, row_at<const T>(p.k, b, kvh, j0), p.k.st, bk);
  tc::load_tile<kKvKeys, D, kThreads>(smem + L::kV, row_at<const T>(p.v, b, kvh, j0), p.v.st, bk);
  tc::cp_async_commit();
  if (items > 0) load_q(0, 0);
  tc::cp_async_commit();

  // This thread's two keys (accumulator rows g and g + 8 of its warp) and the block's id range.
  const int kr0 = j0 + warp * 16 + g, kr1 = kr0 + 8;
  long long ks0 = 0, ks1 = 0, klo = LLONG_MAX, khi = LLONG_MIN;
  if (has_seg) {
    long long lo = LLONG_MAX, hi = LLONG_MIN;
    if (kr0 < p.S) ks0 = segment_id(p, b, kr0), lo = min(lo, ks0), hi = max(hi, ks0);
    if (kr1 < p.S) ks1 = segment_id(p, b, kr1), lo = min(lo, ks1), hi = max(hi, ks1);
    block_range(lo, hi, red, klo, khi);
  }

  float dk[kDTiles][4], dv[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.f;
  const float scale_log2 = static_cast<float>(p.scale * tc::kLog2e);
  const T* sk = smem + L::kK + warp * 16 * kLd;  // this warp's 16 keys
  const T* sv = smem + L::kV + warp * 16 * kLd;

  for (int it = 0; it < items; ++it) {
    const int stage = it & 1;
    const int i0 = (first_qt + it % q_tiles) * kKvRows;
    if (it + 1 < items) load_q(it + 1, stage ^ 1);
    tc::cp_async_commit();
    tc::cp_async_wait<1>();  // K, V and step `it` have landed
    const T* sq = smem + L::kQ + stage * kKvRows * kLd;
    const T* sdo = smem + L::kDO + stage * kKvRows * kLd;
    const unsigned char* rows = smem_raw + L::kRowsBytes + stage * kRowBytes;
    bool full = (!p.causal || j0 + kKvKeys - 1 <= i0 + p.offset) && j0 + kKvKeys <= p.S;
    bool any = true;
    if (has_seg) {  // each query's id was copied by thread `tid` itself
      const bool q_ok = tid < kKvRows && i0 + tid < p.T;
      const long long qs = q_ok ? tc::segment_at(rows + kRowSeg, tid, p.seg64) : 0;
      any = __syncthreads_or(q_ok && qs >= klo && qs <= khi);
      const bool one_segment = __syncthreads_and(!q_ok || (qs == klo && klo == khi));
      full = full && one_segment;
    } else {
      __syncthreads();
    }
    if (any) {
      // S^T = K q^T and dP^T = V dO^T: 16 keys x 32 queries per warp.
      float st[4][4], dpt[4][4];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[nt][e] = dpt[nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kDSteps; ++ks) {
        uint32_t ka[4], va[4];
        tc::ldsm_x4(ka, sk + tc::a_row(lane) * kLd + ks * 16 + tc::a_col(lane));
        tc::ldsm_x4(va, sv + tc::a_row(lane) * kLd + ks * 16 + tc::a_col(lane));
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          uint32_t qb[4], gb[4];
          tc::ldsm_x4(qb, sq + (np * 16 + tc::bn_row(lane)) * kLd + ks * 16 + tc::bn_col(lane));
          tc::ldsm_x4(gb, sdo + (np * 16 + tc::bn_row(lane)) * kLd + ks * 16 + tc::bn_col(lane));
          tc::mma16816<T>(st[2 * np], ka, qb[0], qb[1]);
          tc::mma16816<T>(st[2 * np + 1], ka, qb[2], qb[3]);
          tc::mma16816<T>(dpt[2 * np], va, gb[0], gb[1]);
          tc::mma16816<T>(dpt[2 * np + 1], va, gb[2], gb[3]);
        }
      }
      // P^T = exp2(S^T * scale log2 e - lse log2 e), dS^T = P^T (dP^T - delta); column = query.
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qc = nt * 8 + 2 * t4 + (e & 1);  // query row within the step
          const float lse2 = lse_log2(reinterpret_cast<const float*>(rows + kRowLse)[qc]);
          const float delta = reinterpret_cast<const float*>(rows + kRowDelta)[qc];
          float prob = exp2f(st[nt][e] * scale_log2 - lse2);
          if (!full) {
            const int key = e < 2 ? kr0 : kr1, q = i0 + qc;
            bool vis = key < p.S && q < p.T && (!p.causal || key <= q + p.offset);
            if (vis && has_seg) vis = (e < 2 ? ks0 : ks1) == tc::segment_at(rows + kRowSeg, qc, p.seg64);
            if (!vis) prob = 0.f;
          }
          st[nt][e] = prob;
          dpt[nt][e] = prob * (dpt[nt][e] - delta);
        }
      // dV += P^T dO and dK += dS^T q over the step's 32 queries (two k-steps of 16).
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
        uint32_t pa[4], da[4];
        tc::acc_to_a<T>(pa, st[2 * kk], st[2 * kk + 1]);
        tc::acc_to_a<T>(da, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
        for (int dp = 0; dp < kDSteps; ++dp) {
          uint32_t gb[4], qb[4];
          tc::ldsm_x4_trans(gb, sdo + (kk * 16 + tc::bt_row(lane)) * kLd + dp * 16 + tc::bt_col(lane));
          tc::ldsm_x4_trans(qb, sq + (kk * 16 + tc::bt_row(lane)) * kLd + dp * 16 + tc::bt_col(lane));
          tc::mma16816<T>(dv[2 * dp], pa, gb[0], gb[1]);
          tc::mma16816<T>(dv[2 * dp + 1], pa, gb[2], gb[3]);
          tc::mma16816<T>(dk[2 * dp], da, qb[0], qb[1]);
          tc::mma16816<T>(dk[2 * dp + 1], da, qb[2], qb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
  }

  tc::cp_async_wait<0>();  // with no step at all, the K/V copies are still in flight
  // dK carries the scale (q was not scaled). Rows past S are padding.
  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int key = half == 0 ? kr0 : kr1;
    if (key >= p.S) continue;
    const int64_t head_row = int64_t{b} * p.Hkv + kvh;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      const int col = dt * 8 + 2 * t4;
      const float k0 = dk[dt][2 * half] * scale, k1 = dk[dt][2 * half + 1] * scale;
      const float v0 = dv[dt][2 * half], v1 = dv[dt][2 * half + 1];
      if constexpr (kPartial) {
        const int64_t at = ((head_row * splits + split) * p.S + key) * D + col;
        *reinterpret_cast<float2*>(ws_k + at) = make_float2(k0, k1);
        *reinterpret_cast<float2*>(ws_v + at) = make_float2(v0, v1);
      } else {
        const int64_t at = (head_row * p.S + key) * D + col;
        *reinterpret_cast<uint32_t*>(static_cast<T*>(p.dk) + at) = tc::pack2<T>(k0, k1);
        *reinterpret_cast<uint32_t*>(static_cast<T*>(p.dv) + at) = tc::pack2<T>(v0, v1);
      }
    }
  }
}

// dk/dv (B*Hkv, S*D) = sum over the splits, in split order, of the partials (B*Hkv, splits, S*D).
template <typename T>
__global__ void sum_splits_kernel(const float* ws_k, const float* ws_v, T* dk, T* dv, int64_t n, int64_t per_head,
                                  int splits) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t base = (i / per_head) * splits * per_head + i % per_head;
    float sk = 0.f, sv = 0.f;
    for (int s = 0; s < splits; ++s) {
      sk += ws_k[base + s * per_head];
      sv += ws_v[base + s * per_head];
    }
    dk[i] = from_acc<T>(sk);
    dv[i] = from_acc<T>(sv);
  }
}

// ---- dQ ----
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) bwd_dq_tc_kernel(Params p) {
  using L = DqSmem<D>;
  constexpr int kLd = L::kLd, kDTiles = D / 8, kDSteps = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  __shared__ long long red[2 * kWarps];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int q_tiles = (p.T + kQRows - 1) / kQRows;
  const int64_t heads = int64_t{p.B} * p.Hq;
  const int qt = q_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int bh = static_cast<int>(blockIdx.x % heads), b = bh / p.Hq, h = bh % p.Hq, kvh = h / p.group;
  const int i0 = qt * kQRows, bq = min(kQRows, p.T - i0);
  const int k_tiles = (key_end(p, i0 + bq) + kQKeys - 1) / kQKeys;
  const T* kbase = row_at<const T>(p.k, b, kvh, 0);
  const T* vbase = row_at<const T>(p.v, b, kvh, 0);
  const bool has_seg = p.seg != nullptr;

  auto load_kv = [&](int tile, int stage) {
    const int j0 = tile * kQKeys, valid = min(kQKeys, p.S - j0);
    tc::load_tile<kQKeys, D, kThreads>(smem + L::kK + stage * kQKeys * kLd, kbase + j0 * p.k.st, p.k.st, valid);
    tc::load_tile<kQKeys, D, kThreads>(smem + L::kV + stage * kQKeys * kLd, vbase + j0 * p.v.st, p.v.st, valid);
    tc::load_segments<kQKeys>(smem_raw + L::kSegBytes + stage * kQKeys * 8, p, b, j0, valid);
  };

  tc::load_tile<kQRows, D, kThreads>(smem + L::kQ, row_at<const T>(p.q, b, h, i0), p.q.st, bq);
  tc::load_tile<kQRows, D, kThreads>(smem + L::kDO, row_at<const T>(p.dout, b, h, i0), p.dout.st, bq);
  tc::cp_async_commit();
  if (k_tiles > 0) load_kv(0, 0);
  tc::cp_async_commit();

  // This thread's two query rows: lse (log2 units), delta and segment ids.
  const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;
  const int64_t row_base = int64_t{bh} * p.T;
  const float* lse = static_cast<const float*>(p.lse) + row_base;
  const float* delta = static_cast<const float*>(p.delta) + row_base;
  const float lse0 = r0 < p.T ? lse_log2(lse[r0]) : INFINITY, lse1 = r1 < p.T ? lse_log2(lse[r1]) : INFINITY;
  const float delta0 = r0 < p.T ? delta[r0] : 0.f, delta1 = r1 < p.T ? delta[r1] : 0.f;
  long long qs0 = 0, qs1 = 0, qlo = LLONG_MAX, qhi = LLONG_MIN;
  if (has_seg) {
    long long lo = LLONG_MAX, hi = LLONG_MIN;
    if (r0 < p.T) qs0 = segment_id(p, b, r0), lo = min(lo, qs0), hi = max(hi, qs0);
    if (r1 < p.T) qs1 = segment_id(p, b, r1), lo = min(lo, qs1), hi = max(hi, qs1);
    block_range(lo, hi, red, qlo, qhi);
  }

  float dq[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.f;
  const float scale_log2 = static_cast<float>(p.scale * tc::kLog2e);
  const T* sq = smem + L::kQ + warp * 16 * kLd;  // this warp's 16 query rows
  const T* sdo = smem + L::kDO + warp * 16 * kLd;

  for (int it = 0; it < k_tiles; ++it) {
    const int stage = it & 1, j0 = it * kQKeys;
    if (it + 1 < k_tiles) load_kv(it + 1, stage ^ 1);
    tc::cp_async_commit();
    tc::cp_async_wait<1>();  // q, dO and tile `it` have landed
    const T* sk = smem + L::kK + stage * kQKeys * kLd;
    const T* sv = smem + L::kV + stage * kQKeys * kLd;
    const unsigned char* sseg = smem_raw + L::kSegBytes + stage * kQKeys * 8;
    bool full = (!p.causal || j0 + kQKeys - 1 <= i0 + p.offset) && j0 + kQKeys <= p.S;
    bool any = true;
    if (has_seg) {
      const bool key_ok = tid < kQKeys && j0 + tid < p.S;
      const long long ks = key_ok ? tc::segment_at(sseg, tid, p.seg64) : 0;
      any = __syncthreads_or(key_ok && ks >= qlo && ks <= qhi);
      const bool one_segment = __syncthreads_and(!key_ok || (ks == qlo && qlo == qhi));
      full = full && one_segment;
    } else {
      __syncthreads();
    }
    if (any) {
      // S = q K^T and dP = dO V^T: 16 rows x 64 keys per warp.
      float s[8][4], dp[8][4];
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] = dp[nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kDSteps; ++ks) {
        uint32_t qa[4], ga[4];
        tc::ldsm_x4(qa, sq + tc::a_row(lane) * kLd + ks * 16 + tc::a_col(lane));
        tc::ldsm_x4(ga, sdo + tc::a_row(lane) * kLd + ks * 16 + tc::a_col(lane));
#pragma unroll
        for (int np = 0; np < 4; ++np) {
          uint32_t kb[4], vb[4];
          tc::ldsm_x4(kb, sk + (np * 16 + tc::bn_row(lane)) * kLd + ks * 16 + tc::bn_col(lane));
          tc::ldsm_x4(vb, sv + (np * 16 + tc::bn_row(lane)) * kLd + ks * 16 + tc::bn_col(lane));
          tc::mma16816<T>(s[2 * np], qa, kb[0], kb[1]);
          tc::mma16816<T>(s[2 * np + 1], qa, kb[2], kb[3]);
          tc::mma16816<T>(dp[2 * np], ga, vb[0], vb[1]);
          tc::mma16816<T>(dp[2 * np + 1], ga, vb[2], vb[3]);
        }
      }
      // dS = P (dP - delta), P recomputed from lse; kept in dp.
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float prob = exp2f(s[nt][e] * scale_log2 - (e < 2 ? lse0 : lse1));
          if (!full) {
            const int row = e < 2 ? r0 : r1, col = j0 + nt * 8 + 2 * t4 + (e & 1);
            bool vis = col < p.S && (!p.causal || col <= row + p.offset);
            if (vis && has_seg) vis = (e < 2 ? qs0 : qs1) == tc::segment_at(sseg, col - j0, p.seg64);
            if (!vis) prob = 0.f;
          }
          dp[nt][e] = prob * (dp[nt][e] - (e < 2 ? delta0 : delta1));
        }
      // dQ += dS K over the tile's 64 keys (four k-steps of 16).
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t da[4];
        tc::acc_to_a<T>(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int dd = 0; dd < kDSteps; ++dd) {
          uint32_t kb[4];
          tc::ldsm_x4_trans(kb, sk + (kk * 16 + tc::bt_row(lane)) * kLd + dd * 16 + tc::bt_col(lane));
          tc::mma16816<T>(dq[2 * dd], da, kb[0], kb[1]);
          tc::mma16816<T>(dq[2 * dd + 1], da, kb[2], kb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
  }

  tc::cp_async_wait<0>();  // with no key tile at all, the q/dO copies are still in flight
  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = half == 0 ? r0 : r1;
    if (row >= p.T) continue;
    T* out = static_cast<T*>(p.dq) + (row_base + row) * D + 2 * t4;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
      *reinterpret_cast<uint32_t*>(out + dt * 8) =
          tc::pack2<T>(dq[dt][2 * half] * scale, dq[dt][2 * half + 1] * scale);
  }
}

unsigned grid_of(int64_t blocks, const char* op) {
  SL_CHECK(blocks >= 1 && blocks <= 0x7fffffff, op, ": ", blocks, " blocks exceed CUDA's grid limit");
  return static_cast<unsigned>(blocks);
}

// How many blocks share the q-heads of a group in the dK/dV kernel: the smallest divisor of the
// group that gives every SM about four blocks (1 when the batch alone does).
int choose_splits(const Params& p, int64_t key_tiles) {
  int sms = 0;
  SL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, p.device));
  const int64_t blocks = key_tiles * p.B * p.Hkv;
  for (int s = 1; s <= p.group; ++s)
    if (p.group % s == 0 && blocks * s >= 4 * int64_t{sms}) return s;
  return p.group;
}

template <typename T, int D>
void run_bwd(const Params& p, cudaStream_t stream) {
  const char* op = "attention_bwd";
  if (p.S > 0) {
    const int64_t key_tiles = (p.S + kKvKeys - 1) / kKvKeys;
    const int splits = choose_splits(p, key_tiles);
    const unsigned grid = grid_of(key_tiles * p.B * p.Hkv * splits, op);
    const int bytes = DkdvSmem<D>::kBytes;
    if (splits == 1) {
      allow_shared_memory(reinterpret_cast<const void*>(&bwd_dkdv_tc_kernel<T, D, false>), bytes, op, p.device);
      bwd_dkdv_tc_kernel<T, D, false><<<grid, kThreads, bytes, stream>>>(p, nullptr, nullptr, 1);
      SL_CUDA_CHECK(cudaGetLastError());
    } else {
      // Freed at return, reused only by work queued after ours on the same stream.
      MemTagScope scope(MemTag::workspace);
      const int64_t per_head = int64_t{p.S} * D, n = int64_t{p.B} * p.Hkv * per_head;
      Tensor ws_k = Tensor::empty({n * splits}, DType::f32, Device::cuda(p.device));
      Tensor ws_v = Tensor::empty({n * splits}, DType::f32, Device::cuda(p.device));
      float* wk = static_cast<float*>(ws_k.raw_data());
      float* wv = static_cast<float*>(ws_v.raw_data());
      allow_shared_memory(reinterpret_cast<const void*>(&bwd_dkdv_tc_kernel<T, D, true>), bytes, op, p.device);
      bwd_dkdv_tc_kernel<T, D, true><<<grid, kThreads, bytes, stream>>>(p, wk, wv, splits);
      SL_CUDA_CHECK(cudaGetLastError());
      const int64_t sum_blocks = std::min<int64_t>((n + 255) / 256, 65535);
      sum_splits_kernel<T><<<static_cast<unsigned>(sum_blocks), 256, 0, stream>>>(
          wk, wv, static_cast<T*>(p.dk), static_cast<T*>(p.dv), n, per_head, splits);
      SL_CUDA_CHECK(cudaGetLastError());
    }
  }
  const int bytes = DqSmem<D>::kBytes;
  allow_shared_memory(reinterpret_cast<const void*>(&bwd_dq_tc_kernel<T, D>), bytes, op, p.device);
  const int64_t blocks = int64_t{(p.T + kQRows - 1) / kQRows} * p.B * p.Hq;
  bwd_dq_tc_kernel<T, D><<<grid_of(blocks, op), kThreads, bytes, stream>>>(p);
  SL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void bwd_tc(const Params& p, DType dtype, cudaStream_t stream) {
  SL_CHECK(tc_supported(dtype, p.D), "attention_bwd: the tensor-core kernel takes bf16/f16 with head dim 64 or 128");
  if (dtype == DType::bf16) {
    if (p.D == 64) run_bwd<__nv_bfloat16, 64>(p, stream);
    else run_bwd<__nv_bfloat16, 128>(p, stream);
  } else {
    if (p.D == 64) run_bwd<__half, 64>(p, stream);
    else run_bwd<__half, 128>(p, stream);
  }
}

}  // namespace shardlab::cuda::attention

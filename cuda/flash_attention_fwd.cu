// The tensor-core attention forward for bf16/f16 with head dim 64 or 128 (FlashAttention-2 with
// mma.sync): one block of 4 warps per (64-query tile, head, batch); each warp keeps its 16 query
// rows as A fragments in registers and its 16 x D output in f32 accumulators, and streams 64-key
// tiles of K and V through double-buffered shared memory (cp.async). Online softmax in f32 in
// base 2 (exp2 of scores pre-multiplied by scale * log2 e); P is rounded to the input dtype for P V.
#include <climits>
#include <cmath>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/flash_attention.cuh"

namespace shardlab::cuda::attention {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockQ = kWarps * 16;  // query rows per block (16 per warp)
constexpr int kBlockK = 64;           // keys per tile

// Shared memory in 16-bit elements: Q (kBlockQ, D + 8), then two stages of K and of V
// (kBlockK, D + 8), then two stages of kBlockK 8-byte key segment ids.
template <int D>
struct FwdSmem {
  static constexpr int kLd = D + 8;
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + kBlockQ * kLd;
  static constexpr int kV = kK + 2 * kBlockK * kLd;
  static constexpr int kSegBytes = (kV + 2 * kBlockK * kLd) * 2;
  static constexpr int kBytes = kSegBytes + 2 * kBlockK * 8;
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) fwd_tc_kernel(Params p) {
  using L = FwdSmem<D>;
  constexpr int kLd = L::kLd, kDTiles = D / 8, kDSteps = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  __shared__ long long red_lo[kWarps], red_hi[kWarps];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  // Block order: the last query tiles (the most keys under a causal mask) first.
  const int q_tiles = (p.T + kBlockQ - 1) / kBlockQ;
  const int64_t heads = int64_t{p.B} * p.Hq;
  const int qt = q_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int bh = static_cast<int>(blockIdx.x % heads), b = bh / p.Hq, h = bh % p.Hq, kvh = h / p.group;
  const int i0 = qt * kBlockQ, bq = min(kBlockQ, p.T - i0);
  const int k_tiles = (key_end(p, i0 + bq) + kBlockK - 1) / kBlockK;
  const T* kbase = row_at<const T>(p.k, b, kvh, 0);
  const T* vbase = row_at<const T>(p.v, b, kvh, 0);
  const bool has_seg = p.seg != nullptr;

  auto load_kv = [&](int tile, int stage) {
    const int j0 = tile * kBlockK, valid = min(kBlockK, p.S - j0);
    tc::load_tile<kBlockK, D, kThreads>(smem + L::kK + stage * kBlockK * kLd, kbase + j0 * p.k.st, p.k.st, valid);
    tc::load_tile<kBlockK, D, kThreads>(smem + L::kV + stage * kBlockK * kLd, vbase + j0 * p.v.st, p.v.st, valid);
    tc::load_segments<kBlockK>(smem_raw + L::kSegBytes + stage * kBlockK * 8, p, b, j0, valid);
  };

  // The Q tile and the first K/V tile in flight together.
  tc::load_tile<kBlockQ, D, kThreads>(smem + L::kQ, row_at<const T>(p.q, b, h, i0), p.q.st, bq);
  tc::cp_async_commit();
  if (k_tiles > 0) load_kv(0, 0);
  tc::cp_async_commit();

  // This thread's two query rows (accumulator rows g and g + 8 of its warp) and their segments.
  const int r0 = i0 + warp * 16 + g, r1 = r0 + 8;
  long long qs0 = 0, qs1 = 0;
  if (has_seg) {
    long long lo = LLONG_MAX, hi = LLONG_MIN;
    if (r0 < p.T) qs0 = segment_id(p, b, r0), lo = min(lo, qs0), hi = max(hi, qs0);
    if (r1 < p.T) qs1 = segment_id(p, b, r1), lo = min(lo, qs1), hi = max(hi, qs1);
    for (int off = 16; off > 0; off /= 2) {
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, off));
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, off));
    }
    if (lane == 0) red_lo[warp] = lo, red_hi[warp] = hi;
  }
  tc::cp_async_wait<1>();  // the Q tile has landed
  __syncthreads();
  long long qlo = LLONG_MAX, qhi = LLONG_MIN;  // segment range of the tile's query rows
  if (has_seg)
    for (int w = 0; w < kWarps; ++w) qlo = min(qlo, red_lo[w]), qhi = max(qhi, red_hi[w]);

  uint32_t qf[kDSteps][4];
#pragma unroll
  for (int ks = 0; ks < kDSteps; ++ks)
    tc::ldsm_x4(qf[ks], smem + L::kQ + (warp * 16 + tc::a_row(lane)) * kLd + ks * 16 + tc::a_col(lane));

  float o[kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max of rows r0, r1 (log2 units)
  float l0 = 0.f, l1 = 0.f;              // this lane's share of the running sums
  const float scale_log2 = static_cast<float>(p.scale * tc::kLog2e);

  for (int it = 0; it < k_tiles; ++it) {
    const int stage = it & 1, j0 = it * kBlockK;
    if (it + 1 < k_tiles) load_kv(it + 1, stage ^ 1);
    tc::cp_async_commit();
    tc::cp_async_wait<1>();  // tile `it` has landed; only the prefetch may be in flight
    const T* sk = smem + L::kK + stage * kBlockK * kLd;
    const T* sv = smem + L::kV + stage * kBlockK * kLd;
    const unsigned char* sseg = smem_raw + L::kSegBytes + stage * kBlockK * 8;
    // Whether no pair of the tile is masked (full) or some pair is visible (any); block-uniform.
    bool full = (!p.causal || j0 + kBlockK - 1 <= i0 + p.offset) && j0 + kBlockK <= p.S;
    bool any = true;
    if (has_seg) {
      // Each key's id was copied by thread `tid` itself, so it may read it before the barrier.
      const bool key_ok = tid < kBlockK && j0 + tid < p.S;
      const long long ks = key_ok ? tc::segment_at(sseg, tid, p.seg64) : 0;
      any = __syncthreads_or(key_ok && ks >= qlo && ks <= qhi);
      const bool one_segment = __syncthreads_and(!key_ok || (ks == qlo && qlo == qhi));
      full = full && one_segment;
    } else {
      __syncthreads();
    }
    if (any) {
      // S = Q K^T: 16 rows x 64 keys per warp, as 8 accumulator tiles of 16 x 8.
      float s[8][4];
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kDSteps; ++ks) {
#pragma unroll
        for (int np = 0; np < 4; ++np) {
          uint32_t kb[4];
          tc::ldsm_x4(kb, sk + (np * 16 + tc::bn_row(lane)) * kLd + ks * 16 + tc::bn_col(lane));
          tc::mma16816<T>(s[2 * np], qf[ks], kb[0], kb[1]);
          tc::mma16816<T>(s[2 * np + 1], qf[ks], kb[2], kb[3]);
        }
      }
      // Scale first, then mask: a negative or zero scale must not turn -inf into +inf or NaN.
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[nt][e] *= scale_log2;
          if (!full) {
            const int row = e < 2 ? r0 : r1, col = j0 + nt * 8 + 2 * t4 + (e & 1);
            bool vis = col < p.S && (!p.causal || col <= row + p.offset);
            if (vis && has_seg) vis = (e < 2 ? qs0 : qs1) == tc::segment_at(sseg, col - j0, p.seg64);
            if (!vis) s[nt][e] = -INFINITY;
          }
        }
      // Online softmax; the 4 lanes of a quad share rows r0 and r1.
      float mx0 = m0, mx1 = m1;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
      }
#pragma unroll
      for (int off = 1; off <= 2; off *= 2) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      // With nothing visible yet (max -inf) subtract 0 instead: every term is exp2(-inf) = 0.
      const float base0 = mx0 == -INFINITY ? 0.f : mx0, base1 = mx1 == -INFINITY ? 0.f : mx1;
      const float a0 = exp2f(m0 - base0), a1 = exp2f(m1 - base1);
      m0 = mx0;
      m1 = mx1;
      float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        s[nt][0] = exp2f(s[nt][0] - base0);
        s[nt][1] = exp2f(s[nt][1] - base0);
        s[nt][2] = exp2f(s[nt][2] - base1);
        s[nt][3] = exp2f(s[nt][3] - base1);
        sum0 += s[nt][0] + s[nt][1];
        sum1 += s[nt][2] + s[nt][3];
      }
      l0 = l0 * a0 + sum0;
      l1 = l1 * a1 + sum1;
#pragma unroll
      for (int dt = 0; dt < kDTiles; ++dt) {
        o[dt][0] *= a0;
        o[dt][1] *= a0;
        o[dt][2] *= a1;
        o[dt][3] *= a1;
      }
      // O += P V, P straight from the accumulators (16 keys per k-step).
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[4];
        tc::acc_to_a<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
        for (int dp = 0; dp < kDSteps; ++dp) {
          uint32_t vb[4];
          tc::ldsm_x4_trans(vb, sv + (kk * 16 + tc::bt_row(lane)) * kLd + dp * 16 + tc::bt_col(lane));
          tc::mma16816<T>(o[2 * dp], pa, vb[0], vb[1]);
          tc::mma16816<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next prefetch overwrites it
  }

  // Row sums over the quad; NOTE [attention rows without keys]: out 0, lse -inf.
#pragma unroll
  for (int off = 1; off <= 2; off *= 2) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
  float* lse = static_cast<float*>(p.lse) + int64_t{bh} * p.T;
  if (r0 < p.T) {
    T* out = row_at<T>(p.out, b, h, r0) + 2 * t4;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
      *reinterpret_cast<uint32_t*>(out + dt * 8) = tc::pack2<T>(o[dt][0] * inv0, o[dt][1] * inv0);
    if (t4 == 0) lse[r0] = l0 > 0.f ? (m0 + log2f(l0)) * tc::kLn2 : -INFINITY;
  }
  if (r1 < p.T) {
    T* out = row_at<T>(p.out, b, h, r1) + 2 * t4;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
      *reinterpret_cast<uint32_t*>(out + dt * 8) = tc::pack2<T>(o[dt][2] * inv1, o[dt][3] * inv1);
    if (t4 == 0) lse[r1] = l1 > 0.f ? (m1 + log2f(l1)) * tc::kLn2 : -INFINITY;
  }
}

template <typename T, int D>
void launch_fwd(const Params& p, cudaStream_t stream) {
  const char* op = "attention_fwd";
  const int bytes = FwdSmem<D>::kBytes;
  allow_shared_memory(reinterpret_cast<const void*>(&fwd_tc_kernel<T, D>), bytes, op, p.device);
  const int64_t blocks = int64_t{(p.T + kBlockQ - 1) / kBlockQ} * p.B * p.Hq;
  SL_CHECK(blocks <= 0x7fffffff, op, ": ", blocks, " blocks exceed CUDA's grid limit");
  fwd_tc_kernel<T, D><<<static_cast<unsigned>(blocks), kThreads, bytes, stream>>>(p);
  SL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool tc_supported(DType dtype, int head_dim) {
  return (dtype == DType::bf16 || dtype == DType::f16) && (head_dim == 64 || head_dim == 128);
}

void fwd_tc(const Params& p, DType dtype, cudaStream_t stream) {
  SL_CHECK(tc_supported(dtype, p.D), "attention_fwd: the tensor-core kernel takes bf16/f16 with head dim 64 or 128");
  if (dtype == DType::bf16) {
    if (p.D == 64) launch_fwd<__nv_bfloat16, 64>(p, stream);
    else launch_fwd<__nv_bfloat16, 128>(p, stream);
  } else {
    if (p.D == 64) launch_fwd<__half, 64>(p, stream);
    else launch_fwd<__half, 128>(p, stream);
  }
}

}  // namespace shardlab::cuda::attention

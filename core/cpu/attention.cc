// Scaled dot-product attention with grouped-query heads on the CPU, FlashAttention-2 style: query
// blocks x key blocks, an online softmax in the forward and a recompute-from-lse backward, so no
// (T, S) matrix ever exists. The small per-block GEMMs go through Eigen.
// GCC 12 reports a false -Wmaybe-uninitialized inside Eigen 3.4's AVX-512 exp; silence it here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "core/strided.h"
#include "core/trace.h"
#include "core/attention_args.h"

namespace shardlab::ops {

// NOTE [attention rows without keys]
// With causal masking and T > S (queries aligned to the end of the keys, as FlashAttention does),
// the first T - S queries see no key at all. Their softmax is empty: we define the output row as 0
// and lse as -inf, and backward gives them (and through them k and v) zero gradient.

namespace {

constexpr int64_t kBlockQ = 64;  // queries per block
constexpr int64_t kBlockK = 64;  // keys per block
// Below this many multiply-adds (one pass) the work runs on one thread.
constexpr int64_t kParallelMinWork = int64_t{1} << 17;

template <typename A>
using RowMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename A>
using MatMap = Eigen::Map<RowMat<A>>;
template <typename A>
using ConstMatMap = Eigen::Map<const RowMat<A>>;

// Everything about one call that the blocks need: sizes, masking rule and segment ids.
struct Geometry {
  int64_t B = 0, Hq = 0, Hkv = 0, T = 0, S = 0, D = 0;
  int64_t group = 1;   // q-heads per kv-head
  int64_t offset = 0;  // causal: query i sees keys j <= i + offset (offset = S - T)
  bool causal = true;
  double scale = 1.0;
  std::vector<int64_t> segments;  // (B, T) document ids, empty when not packing

  const int64_t* segments_of(int64_t b) const { return segments.empty() ? nullptr : segments.data() + b * T; }
  // One past the last key any query in [i0, i1) may see.
  int64_t key_end(int64_t i1) const { return causal ? std::clamp<int64_t>(i1 + offset, 0, S) : S; }
  bool visible(const int64_t* seg, int64_t i, int64_t j) const {
    return (!causal || j <= i + offset) && (seg == nullptr || seg[i] == seg[j]);
  }
};

enum class BlockKind { skip, full, partial };

// Whether every, no, or some (query, key) pairs of the block [i0, i1) x [j0, j1) are visible.
BlockKind classify(const Geometry& g, const int64_t* seg, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  bool full = true;
  if (g.causal) {
    if (j0 > i1 - 1 + g.offset) return BlockKind::skip;
    full = j1 - 1 <= i0 + g.offset;
  }
  if (seg != nullptr) {
    auto [qlo, qhi] = std::minmax_element(seg + i0, seg + i1);
    auto [klo, khi] = std::minmax_element(seg + j0, seg + j1);
    if (*qhi < *klo || *khi < *qlo) return BlockKind::skip;
    full = full && *qlo == *qhi && *klo == *khi && *qlo == *klo;
  }
  return full ? BlockKind::full : BlockKind::partial;
}

// Sets scores of invisible pairs to `value` (-inf before a softmax, 0 after).
template <typename A>
void mask_block(const Geometry& g, const int64_t* seg, int64_t i0, int64_t j0, MatMap<A>& block, A value) {
  for (int64_t r = 0; r < block.rows(); ++r)
    for (int64_t c = 0; c < block.cols(); ++c)
      if (!g.visible(seg, i0 + r, j0 + c)) block(r, c) = value;
}

Geometry check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionOptions& options) {
  check_cpu(op, {q, k, v});
  if (options.segment_ids.defined()) check_cpu(op, {q, options.segment_ids});
  const AttentionDims d = check_attention_args(op, q, k, v, options);
  Geometry g;
  g.B = d.B, g.Hq = d.Hq, g.T = d.T, g.D = d.D;
  g.Hkv = d.Hkv, g.S = d.S;
  g.group = g.Hq / g.Hkv;
  g.causal = options.causal;
  g.offset = g.S - g.T;
  g.scale = d.scale;
  if (options.segment_ids.defined()) g.segments = options.segment_ids.to_int_vector();
  return g;
}

// t as a contiguous tensor of the arithmetic dtype (16-bit floats converted up once, O(T*D)).
Tensor contiguous_as(const Tensor& t, DType dtype) {
  MemTagScope tag(MemTag::workspace);
  return ops::contiguous(ops::to_dtype(t, dtype));
}

// Per-thread scratch, allocated as a tensor so that the memory ledger sees it. The parallel loop
// must run with num_threads(threads) so that every omp_get_thread_num() has a slot.
template <typename A>
struct Scratch {
  Tensor buffer;
  int64_t per_thread = 0;
  int threads = 1;
  Scratch(int64_t per, int64_t tasks) : per_thread(per) {
    MemTagScope tag(MemTag::workspace);
    threads = static_cast<int>(std::clamp<int64_t>(tasks, 1, omp_get_max_threads()));
    buffer = Tensor::empty({threads * per}, dtype_of<A>);
  }
  A* slot() const { return buffer.data<A>() + omp_get_thread_num() * per_thread; }
};

// ---- forward: one (batch, q-head, query block) ----
// q (bq, D), k/v (S, D) of the matching kv-head; writes out (bq, D) and lse (bq,).
template <typename T, typename A>
void forward_block(const Geometry& g, const int64_t* seg, int64_t i0, int64_t bq, const A* q, const A* k,
                   const A* v, T* out, A* lse, A* scratch) {
  const int64_t D = g.D;
  const A scale = static_cast<A>(g.scale);
  const A neg_inf = -std::numeric_limits<A>::infinity();
  MatMap<A> Q(scratch, bq, D);  // q * scale, so that Q K^T are already the scaled scores
  MatMap<A> O(Q.data() + bq * D, bq, D);  // unnormalised output accumulator
  A* m = O.data() + bq * D;  // running row max of the scaled scores
  A* l = m + bq;             // running row sum of exp(score - m)
  A* scores = l + bq;        // (bq, kBlockK)
  Q = ConstMatMap<A>(q, bq, D) * scale;
  O.setZero();
  std::fill(m, m + bq, neg_inf);
  std::fill(l, l + bq, A(0));
  const int64_t kend = g.key_end(i0 + bq);
  for (int64_t j0 = 0; j0 < kend; j0 += kBlockK) {
    const int64_t bk = std::min(kBlockK, kend - j0);
    const BlockKind kind = classify(g, seg, i0, i0 + bq, j0, j0 + bk);
    if (kind == BlockKind::skip) continue;
    ConstMatMap<A> K(k + j0 * D, bk, D), V(v + j0 * D, bk, D);
    MatMap<A> P(scores, bq, bk);
    P.noalias() = Q * K.transpose();
    if (kind == BlockKind::partial) mask_block<A>(g, seg, i0, j0, P, neg_inf);
    for (int64_t r = 0; r < bq; ++r) {
      const A m_new = std::max(m[r], P.row(r).maxCoeff());
      if (m_new == neg_inf) {  // nothing visible to this row yet
        P.row(r).setZero();
        continue;
      }
      const A alpha = std::exp(m[r] - m_new);  // rescales what was summed under the old max
      P.row(r) = (P.row(r).array() - m_new).exp().matrix();
      l[r] = l[r] * alpha + P.row(r).sum();
      if (alpha != A(1)) O.row(r) *= alpha;
      m[r] = m_new;
    }
    O.noalias() += P * V;
  }
  for (int64_t r = 0; r < bq; ++r) {
    if (l[r] == A(0)) {  // NOTE [attention rows without keys]
      for (int64_t d = 0; d < D; ++d) out[r * D + d] = T(0);
      lse[r] = neg_inf;
      continue;
    }
    const A inv = A(1) / l[r];
    for (int64_t d = 0; d < D; ++d) out[r * D + d] = convert<T>(O(r, d) * inv);
    lse[r] = m[r] + std::log(l[r]);
  }
}

// ---- backward: every q-head of one kv-head, so dK/dV are owned by one thread ----
// dq rows of the group are written block by block; dk, dv (S, D) of the kv-head accumulate.
template <typename T, typename A>
void backward_kv_head(const Geometry& g, const int64_t* seg, int64_t b, int64_t kv_head, const A* q, const A* k,
                      const A* v, const A* dout, const A* out, const A* lse, T* dq, A* dk, A* dv, A* scratch) {
  const int64_t D = g.D, T_ = g.T, S = g.S;
  const A scale = static_cast<A>(g.scale);
  const A neg_inf = -std::numeric_limits<A>::infinity();
  const int64_t kv_index = b * g.Hkv + kv_head;
  ConstMatMap<A> K_all(k + kv_index * S * D, S, D), V_all(v + kv_index * S * D, S, D);
  MatMap<A> dK(dk + kv_index * S * D, S, D), dV(dv + kv_index * S * D, S, D);
  A* p_buf = scratch;                    // (kBlockQ, kBlockK) probabilities
  A* dp_buf = p_buf + kBlockQ * kBlockK;  // (kBlockQ, kBlockK) dP, then dS
  A* dq_buf = dp_buf + kBlockQ * kBlockK;  // (kBlockQ, D)
  A* qs_buf = dq_buf + kBlockQ * D;        // (kBlockQ, D) q * scale
  A* drow = qs_buf + kBlockQ * D;          // (kBlockQ,) rowsum(dO * O)
  for (int64_t gi = 0; gi < g.group; ++gi) {
    const int64_t row = (b * g.Hq + kv_head * g.group + gi) * T_;  // first (b, h, t) row of this q-head
    for (int64_t i0 = 0; i0 < T_; i0 += kBlockQ) {
      const int64_t bq = std::min(kBlockQ, T_ - i0);
      ConstMatMap<A> dO(dout + (row + i0) * D, bq, D), O(out + (row + i0) * D, bq, D);
      // Scaled q gives the scaled scores directly and makes dS^T (q * scale) the whole dK term.
      MatMap<A> Q(qs_buf, bq, D);
      Q = ConstMatMap<A>(q + (row + i0) * D, bq, D) * scale;
      const A* L = lse + row + i0;
      MatMap<A> dQ(dq_buf, bq, D);
      dQ.setZero();
      for (int64_t r = 0; r < bq; ++r) drow[r] = dO.row(r).dot(O.row(r));
      const int64_t kend = g.key_end(i0 + bq);
      for (int64_t j0 = 0; j0 < kend; j0 += kBlockK) {
        const int64_t bk = std::min(kBlockK, kend - j0);
        const BlockKind kind = classify(g, seg, i0, i0 + bq, j0, j0 + bk);
        if (kind == BlockKind::skip) continue;
        auto K = K_all.middleRows(j0, bk);
        auto V = V_all.middleRows(j0, bk);
        MatMap<A> P(p_buf, bq, bk), dS(dp_buf, bq, bk);
        P.noalias() = Q * K.transpose();
        for (int64_t r = 0; r < bq; ++r) {
          if (L[r] == neg_inf) P.row(r).setZero();  // NOTE [attention rows without keys]
          else P.row(r) = (P.row(r).array() - L[r]).exp().matrix();
        }
        if (kind == BlockKind::partial) mask_block<A>(g, seg, i0, j0, P, A(0));
        dV.middleRows(j0, bk).noalias() += P.transpose() * dO;
        dS.noalias() = dO * V.transpose();  // dP
        for (int64_t r = 0; r < bq; ++r) dS.row(r) = (P.row(r).array() * (dS.row(r).array() - drow[r])).matrix();
        dQ.noalias() += dS * K;
        dK.middleRows(j0, bk).noalias() += dS.transpose() * Q;
      }
      T* dq_rows = dq + (row + i0) * D;
      for (int64_t r = 0; r < bq; ++r)
        for (int64_t d = 0; d < D; ++d) dq_rows[r * D + d] = convert<T>(dQ(r, d) * scale);
    }
  }
}

}  // namespace

AttentionOut attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  SL_FORWARD_TO_DEVICE(attention_fwd, q.device(), q, k, v, options);
  SL_TRACE_OP("attention_fwd", q, k, v);
  const Geometry g = check_attention("attention_fwd", q, k, v, options);
  AttentionOut res;
  dispatch_float(q.dtype(), "attention_fwd", [&]<typename T>() {
    using A = acc_t<T>;
    res.out = Tensor::empty(q.shape(), q.dtype());  // (B, Hq, T, D)
    res.lse = Tensor::empty({g.B, g.Hq, g.T}, dtype_of<A>);
    Tensor qa = contiguous_as(q, dtype_of<A>), ka = contiguous_as(k, dtype_of<A>), va = contiguous_as(v, dtype_of<A>);
    const A *qp = qa.data<A>(), *kp = ka.data<A>(), *vp = va.data<A>();
    T* op = res.out.data<T>();
    A* lp = res.lse.data<A>();
    const int64_t q_blocks = (g.T + kBlockQ - 1) / kBlockQ;
    const int64_t tasks = g.B * g.Hq * q_blocks;
    const int64_t work = g.B * g.Hq * g.T * g.S * g.D / (g.causal ? 2 : 1);
    Scratch<A> scratch(2 * kBlockQ * g.D + 2 * kBlockQ + kBlockQ * kBlockK, tasks);
    // Dynamic scheduling: with a causal mask later query blocks see more keys.
#pragma omp parallel for schedule(dynamic, 1) num_threads(scratch.threads) if (work >= kParallelMinWork && tasks > 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t bh = task / q_blocks, b = bh / g.Hq, h = bh % g.Hq;
      const int64_t i0 = (task % q_blocks) * kBlockQ, bq = std::min(kBlockQ, g.T - i0);
      const int64_t kv = (b * g.Hkv + h / g.group) * g.S * g.D;
      const int64_t row = bh * g.T + i0;
      forward_block<T, A>(g, g.segments_of(b), i0, bq, qp + row * g.D, kp + kv, vp + kv, op + row * g.D, lp + row,
                          scratch.slot());
    }
  });
  return res;
}

AttentionGrads attention_bwd(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const AttentionOptions& options) {
  SL_FORWARD_TO_DEVICE(attention_bwd, dout.device(), dout, q, k, v, out, lse, options);
  SL_TRACE_OP("attention_bwd", dout, q, k, v);
  const char* op = "attention_bwd";
  const Geometry g = check_attention(op, q, k, v, options);
  check_cpu(op, {dout, q, out, lse});
  SL_CHECK(dout.shape() == q.shape() && out.shape() == q.shape(), op, ": dout ", shape_str(dout.shape()), " and out ",
           shape_str(out.shape()), " must have q's shape ", shape_str(q.shape()));
  check_same_dtype(op, q, dout);
  check_same_dtype(op, q, out);
  SL_CHECK(lse.shape() == Shape({g.B, g.Hq, g.T}), op, ": lse ", shape_str(lse.shape()), " must have shape (B, Hq, T) = ",
           shape_str({g.B, g.Hq, g.T}), " for q ", shape_str(q.shape()));
  AttentionGrads res;
  dispatch_float(q.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    SL_CHECK(lse.dtype() == dtype_of<A>, op, ": lse must be ", dtype_name(dtype_of<A>), " for ", dtype_name(q.dtype()),
             " inputs, got ", dtype_name(lse.dtype()), " of shape ", shape_str(lse.shape()));
    const DType acc = dtype_of<A>;
    Tensor qa = contiguous_as(q, acc), ka = contiguous_as(k, acc), va = contiguous_as(v, acc);
    Tensor da = contiguous_as(dout, acc), oa = contiguous_as(out, acc), la = contiguous_as(lse, acc);
    res.dq = Tensor::empty(q.shape(), q.dtype());
    // dk/dv accumulate over the q-heads of a group: in the outputs themselves for f32/f64, in f32
    // scratch (rounded once at the end) for 16-bit floats.
    Tensor dk_acc, dv_acc;
    {
      std::optional<MemTagScope> tag;
      if (acc != q.dtype()) tag.emplace(MemTag::workspace);
      dk_acc = Tensor::zeros(k.shape(), acc);
      dv_acc = Tensor::zeros(v.shape(), acc);
    }
    const int64_t tasks = g.B * g.Hkv;
    const int64_t work = g.B * g.Hq * g.T * g.S * g.D / (g.causal ? 2 : 1);
    Scratch<A> scratch(2 * kBlockQ * kBlockK + 2 * kBlockQ * g.D + kBlockQ, tasks);
#pragma omp parallel for schedule(dynamic, 1) num_threads(scratch.threads) if (work >= kParallelMinWork && tasks > 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / g.Hkv, kv_head = task % g.Hkv;
      backward_kv_head<T, A>(g, g.segments_of(b), b, kv_head, qa.data<A>(), ka.data<A>(), va.data<A>(),
                             da.data<A>(), oa.data<A>(), la.data<A>(), res.dq.data<T>(), dk_acc.data<A>(),
                             dv_acc.data<A>(), scratch.slot());
    }
    res.dk = ops::to_dtype(dk_acc, k.dtype());
    res.dv = ops::to_dtype(dv_acc, v.dtype());
  });
  return res;
}

}  // namespace shardlab::ops

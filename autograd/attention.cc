// Differentiable attention: the blockwise forward saves q, k, v, out and the per-row log-sum-exp,
// which is all the blockwise backward needs to recompute the probabilities (no (T, S) matrix).
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  ops::AttentionOut r = ops::attention_fwd(q, k, v, options);
  if (needs_grad({q, k, v})) {
    record("attention", {q, k, v}, {r.out},
           [sq = SavedTensor(q), sk = SavedTensor(k), sv = SavedTensor(v), so = SavedTensor(r.out),
            sl = SavedTensor(r.lse), options](const Grads& g) {
             const char* op = "attention";
             ops::AttentionGrads d = ops::attention_bwd(g[0], sq.unpack(op), sk.unpack(op), sv.unpack(op),
                                                        so.unpack(op), sl.unpack(op), options);
             return Grads{d.dq, d.dk, d.dv};
           });
  }
  return r.out;
}

}  // namespace shardlab

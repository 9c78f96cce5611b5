// Differentiable cross-entropy: saves logits, targets and the per-row log-sum-exp; backward
// recomputes softmax row by row from them (no (N, V) probability matrix is stored).
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, Reduction reduction) {
  ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, targets, ignore_index, reduction);
  if (needs_grad({logits}))
    record("cross_entropy", {logits}, {out.loss},
           [sl = SavedTensor(logits), st = SavedTensor(targets), lse = SavedTensor(out.lse), ignore_index, reduction,
            count = out.count](const Grads& g) {
             return Grads{ops::cross_entropy_bwd(g[0], sl.unpack("cross_entropy"), st.unpack("cross_entropy"),
                                                 lse.unpack("cross_entropy"), ignore_index, reduction, count)};
           });
  return out.loss;
}

}  // namespace shardlab

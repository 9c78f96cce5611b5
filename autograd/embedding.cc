// Differentiable embedding: the gradient goes to the weight only (ids are integers), as a
// deterministic scatter-add of the output gradient rows.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  Tensor out = ops::embedding(weight, ids);
  if (needs_grad({weight})) {
    const int64_t num_embeddings = weight.size(0);
    record("embedding", {weight}, {out}, [sids = SavedTensor(ids), num_embeddings](const Grads& g) {
      return Grads{ops::embedding_backward(g[0], sids.unpack("embedding"), num_embeddings)};
    });
  }
  return out;
}

}  // namespace shardlab

// Embedding layer.
#include "nn/embedding.h"

#include "autograd/functions.h"
#include "nn/init.h"

namespace shardlab::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, uint64_t seed, DType dtype, double init_std)
    : UnaryModule("Embedding"), num_embeddings_(num_embeddings) {
  register_parameter("weight", init::normal({num_embeddings, dim}, init_std, seed, dtype));
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(tensor("weight"), ids); }

}  // namespace shardlab::nn

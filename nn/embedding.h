// Embedding: a (num_embeddings, dim) table looked up by integer ids.
#pragma once

#include "nn/module.h"

namespace shardlab::nn {

class Embedding : public UnaryModule {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, uint64_t seed, DType dtype = DType::f32, double init_std = 1.0);
  Tensor forward(const Tensor& ids) override;  // (...) int -> (..., dim)

 private:
  int64_t num_embeddings_;
};

}  // namespace shardlab::nn

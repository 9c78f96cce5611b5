// Seeded initialisers.
#include "nn/init.h"

#include <cmath>

namespace shardlab::nn::init {

Tensor linear_default(const Shape& shape, int64_t fan_in, uint64_t seed, DType dtype) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return Tensor::rand(shape, seed, dtype, -bound, bound);
}

Tensor normal(const Shape& shape, double stddev, uint64_t seed, DType dtype) {
  return Tensor::randn(shape, seed, dtype, 0.0, stddev);
}

}  // namespace shardlab::nn::init

// Parameter initialisers, all seeded and counter-based (same seed, same weights, any thread count).
#pragma once

#include "core/tensor.h"

namespace shardlab::nn::init {

// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for nn.Linear (kaiming_uniform with a=sqrt(5)).
Tensor linear_default(const Shape& shape, int64_t fan_in, uint64_t seed, DType dtype = DType::f32);
Tensor normal(const Shape& shape, double stddev, uint64_t seed, DType dtype = DType::f32);

}  // namespace shardlab::nn::init

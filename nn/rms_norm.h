// RMSNorm layer over the last dim with a learned scale (initialised to ones).
#pragma once

#include "nn/module.h"

namespace shardlab::nn {

class RMSNorm : public UnaryModule {
 public:
  RMSNorm(int64_t dim, double eps, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  double eps() const { return eps_; }

 private:
  double eps_;
};

}  // namespace shardlab::nn

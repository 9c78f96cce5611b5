// Linear: y = x W^T (+ b), W (out_features, in_features) as in PyTorch and Hugging Face files.
#pragma once

#include "nn/module.h"

namespace shardlab::nn {

class Linear : public UnaryModule {
 public:
  // init_std > 0 draws the weight from N(0, init_std) (Hugging Face's init) instead of torch's
  // default U(+-1/sqrt(in_features)).
  Linear(int64_t in_features, int64_t out_features, bool bias, uint64_t seed, DType dtype = DType::f32,
         double init_std = 0.0);
  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out)
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
  bool has_bias_;
};

}  // namespace shardlab::nn

// Dropout with a counter-based mask: call k of a layer seeded s draws the mask of (s, k), so a
// run is reproducible and a recomputation (checkpointing) can replay the same mask.
#pragma once

#include "nn/module.h"

namespace shardlab::nn {

class Dropout : public UnaryModule {
 public:
  Dropout(double p, uint64_t seed);
  Tensor forward(const Tensor& x) override;  // identity in eval mode or when p == 0
  double p() const { return p_; }
  // The number of masks drawn so far (part of the training state for exact resume).
  uint64_t calls() const { return calls_; }
  void set_calls(uint64_t calls) { calls_ = calls; }

 private:
  double p_;
  uint64_t seed_;
  uint64_t calls_ = 0;
};

}  // namespace shardlab::nn

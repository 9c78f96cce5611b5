// Activation checkpointing: run a region without saving its activations, and recompute it during
// backward to get the gradients. Trades one extra forward of the region for its activation memory.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace shardlab {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Runs fn(inputs) under no-grad and returns its outputs attached to one checkpoint node. In
// backward, fn is re-run with grad enabled on detached copies of the inputs and back-propagated;
// parameters used inside fn receive their gradients then. fn must be deterministic (shardlab's
// random ops take explicit seeds, so a recomputation sees the same numbers).
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

}  // namespace shardlab

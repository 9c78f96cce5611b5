// A fused AdamW step over many tensors in one kernel launch per parameter dtype (apex's and
// PyTorch's multi_tensor_apply pattern): what the optimizer calls instead of one adamw_step per
// parameter, to save a launch and a pass of host work per tensor.
#pragma once

#include <vector>

#include "core/ops/optim.h"
#include "core/tensor.h"

namespace shardlab::cuda {

// params[i] -= ... exactly as ops::adamw_step(params[i], grads[i], ms[i], vs[i], h) for every i
// (same checks, dtypes and math). All tensors on one CUDA device; the four lists have equal
// lengths; params may mix dtypes (one launch per dtype). A device table of per-tensor pointers and
// sizes is uploaded, and each CUDA block updates one (tensor, 64 Ki-element chunk) pair.
void multi_tensor_adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                             const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, const ops::AdamWHyper& h);

}  // namespace shardlab::cuda

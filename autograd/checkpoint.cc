// Activation checkpointing (see checkpoint.h).
#include "autograd/checkpoint.h"

#include "autograd/engine.h"
#include "autograd/record.h"
#include "core/ops.h"

namespace shardlab {

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = fn(inputs);
  }
  if (!GradMode::enabled()) return outputs;
  // Outputs must be fresh tensors owned by this node (an input passed straight through gets an
  // alias, so that it is not re-wired).
  for (Tensor& out : outputs)
    for (const Tensor& in : inputs)
      if (out.is_same(in)) out = ops::alias(in);

  std::vector<SavedTensor> saved;
  std::vector<bool> wants_grad;
  for (const Tensor& in : inputs) {
    saved.emplace_back(in);
    wants_grad.push_back(in.defined() && in.requires_grad());
  }
  // The node keeps the region's inputs only; the region's activations die with `fn`'s locals.
  record("checkpoint", inputs, outputs, [fn, saved, wants_grad](const Grads& grads) {
    std::vector<Tensor> detached;
    for (size_t i = 0; i < saved.size(); ++i) {
      Tensor d = saved[i].defined() ? ops::alias(saved[i].unpack("checkpoint")) : Tensor();
      if (wants_grad[i]) d.set_requires_grad(true);
      detached.push_back(d);
    }
    std::vector<Tensor> recomputed;
    {
      EnableGradGuard enable;
      recomputed = fn(detached);
    }
    std::vector<Tensor> roots, root_grads;
    for (size_t o = 0; o < recomputed.size(); ++o)
      if (recomputed[o].requires_grad()) {
        roots.push_back(recomputed[o]);
        root_grads.push_back(grads[o]);
      }
    if (!roots.empty()) backward(roots, root_grads);
    Grads input_grads;
    for (size_t i = 0; i < detached.size(); ++i) input_grads.push_back(wants_grad[i] ? detached[i].grad() : Tensor());
    return input_grads;
  });
  return outputs;
}

}  // namespace shardlab

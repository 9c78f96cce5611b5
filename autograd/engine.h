// The backward engine: an iterative walk that counts dependencies, then runs nodes as soon as
// all of their output gradients have arrived (later-created nodes first), accumulating parameter
// gradients into .grad and firing grad-ready hooks.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"

namespace shardlab {

struct BackwardOptions {
  // Keep saved tensors so that backward can run through the graph again.
  bool retain_graph = false;
};

// Back-propagates from `root`. A scalar root gets gradient 1; any other root needs `grad`.
void backward(const Tensor& root, const Tensor& grad = Tensor(), BackwardOptions options = {});
// Several roots at once (their gradients are summed where the graphs meet).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, BackwardOptions options = {});

// Returns gradients of `outputs` w.r.t. `inputs` without touching any .grad (inputs need not be
// leaves). Inputs that the outputs do not depend on get an undefined tensor.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
                         const std::vector<Tensor>& inputs, BackwardOptions options = {});

// A tensor that shares data with `t` but is cut from the graph (requires_grad false).
Tensor detach(const Tensor& t);

// Runs `hook(leaf)` each time a backward has finished accumulating the leaf's .grad.
void register_grad_ready_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook);

}  // namespace shardlab

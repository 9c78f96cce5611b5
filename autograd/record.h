// How an op becomes differentiable: compute outputs with raw ops, then, if grad mode is on and an
// input requires grad, record one FunctionNode whose lambda is the backward rule:
//
//   Tensor out = ops::mul(a, b);
//   if (needs_grad({a, b}))
//     record("mul", {a, b}, {out}, [sa = SavedTensor(a), sb = SavedTensor(b)](const Grads& g) {
//       return Grads{ops::mul(g[0], sb.unpack("mul")), ops::mul(g[0], sa.unpack("mul"))};
//     });
//
// The lambda receives one defined gradient per output (zero-filled if none arrived) and returns
// one gradient per input, in order; return an undefined Tensor for inputs that get none.
// Backward runs with grad mode off, so rules may call raw ops or the differentiable ones.
#pragma once

#include <initializer_list>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"

namespace shardlab {

using Grads = std::vector<Tensor>;

// True when grad mode is on and at least one defined input requires grad.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Connects `outputs` to a new node for `inputs` (see the file comment). Outputs become non-leaf
// tensors that require grad.
void record(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward);

}  // namespace shardlab

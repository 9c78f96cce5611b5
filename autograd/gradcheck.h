// gradcheck: compares autograd's gradients with float64 central differences. The outputs are
// projected on fixed random directions v, so one backward gives v^T J for every input, and each
// input element needs two forward runs (f(x + eps) and f(x - eps)).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace shardlab {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 1234;  // for the projection directions
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch: input, element, analytic and numerical values
  int64_t elements_checked = 0;
};

using GradcheckFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Checks d(sum_o <fn(inputs)_o, v_o>)/d(input) for every f64 input that requires grad. Inputs may
// be non-contiguous views; they are perturbed in place (through their strides) and restored.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options = {});

}  // namespace shardlab

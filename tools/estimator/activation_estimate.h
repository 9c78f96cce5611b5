// Activation and workspace bytes of one micro batch's forward + backward, derived from what THIS
// codebase's autograd rules save (models/llama.cc, autograd/*.cc), not from a generic formula.
#pragma once

#include <string>
#include <vector>

#include "tools/estimator/estimate_setup.h"

namespace shardlab::estimate {

// One named term of an estimate: bytes and the formula that gave them (for --verbose).
struct Term {
  std::string name;
  double bytes = 0;
  std::string formula;
};

struct ActivationEstimate {
  double saved_per_layer = 0;   // one decoder layer's saved tensors, its input included
  double saved_head = 0;        // final norm, LM head, cross-entropy and embedding saves
  double saved_total = 0;       // everything saved for backward at the end of the forward
  double peak = 0;              // activation-tag peak (saved tensors + the largest backward transient)
  double workspace_peak = 0;    // attention backward's f32 copies (workspace tag)
  std::vector<Term> terms;      // how each figure was formed
};

ActivationEstimate estimate_activations(const EstimateSetup& setup);

}  // namespace shardlab::estimate

// LoRA (Hu et al. 2021, as Hugging Face PEFT implements it): a frozen base linear plus a trainable
// low-rank path, y = base(x) + (alpha / r) * B(A(dropout(x))), with A (r, in) and B (out, r).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace shardlab::nn {

struct LoraSettings {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  // Module names matched as PEFT does: a module whose dotted path equals a name or ends in "." +
  // name ("q_proj" matches "model.layers.3.self_attn.q_proj").
  std::vector<std::string> target_modules;
  bool target_linear = false;  // every linear layer but the LM head (PEFT's "all-linear")
  uint64_t seed = 0;           // lora_A's init and the dropout masks
};

// NOTE [LoRA parameter names]: the wrapper takes over the base's tensors under their own names
// (weight, bias, or a 4-bit base's packed buffers), so a wrapped model's state dict still reads
// "...q_proj.weight", and adds "...q_proj.lora_A.weight" (r, in) and "...q_proj.lora_B.weight"
// (out, r) as PEFT names them. The base module is not a child; it is kept as the function that
// computes base(x) and is pointed at the wrapper's tensors before each call, so a replace_tensor()
// or to() on the model reaches it too.
class LoraLinear : public UnaryModule {
 public:
  // `base` maps (..., in_features) to (..., out_features) with frozen tensors; lora_A, lora_B are
  // created in `dtype` (A: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in)), PEFT's init; B: zeros).
  // `path` names the module in errors ("model.layers.0.self_attn.q_proj").
  LoraLinear(std::shared_ptr<UnaryModule> base, int64_t in_features, int64_t out_features,
             const LoraSettings& settings, uint64_t seed, DType dtype, std::string path = {});

  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out)

  // W += scale * B A (and -= for unmerge), computed in f32 and rounded once into W's dtype; while
  // merged, forward is base(x) alone. Only a plain nn::Linear base can be merged (a 4-bit base is
  // an error naming the module).
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

  // The base module with the wrapper's current tensors (for export after merge()).
  std::shared_ptr<UnaryModule> base();
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  int64_t rank() const { return rank_; }
  double scaling() const { return scaling_; }
  const std::string& path() const { return path_; }

 private:
  void sync_base() const;
  void apply_delta(double sign);

  std::shared_ptr<UnaryModule> base_;
  std::vector<std::string> base_params_, base_buffers_;
  int64_t in_features_, out_features_, rank_;
  double scaling_;
  std::string path_;
  bool merged_ = false;
};

// Wraps every child that `settings` selects in a LoraLinear (Module::replace_child), never the LM
// head ("lm_head") under target_linear, then freezes every parameter that is not lora_A/lora_B
// (requires_grad false: no gradient, no optimizer state). Returns the wrapped paths in model
// order. Errors name the culprit: a target that matches no module, a target that matches a
// module that is not a linear layer, r < 1, dropout outside [0, 1), a model that already has LoRA.
std::vector<std::string> apply_lora(Module& model, const LoraSettings& settings);

// Every LoraLinear of `model` by path, in model order.
std::vector<std::pair<std::string, LoraLinear*>> lora_modules(Module& model);

// Merges each LoraLinear into its base weight and puts the base back in its place, leaving a plain
// model to export. Returns the merged paths.
std::vector<std::string> merge_lora(Module& model);

}  // namespace shardlab::nn

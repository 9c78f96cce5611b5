// LoraLinear, and applying / merging LoRA across a model by module name.
#include "nn/lora.h"

#include <optional>
#include <utility>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/nf4_linear.h"

namespace shardlab::nn {

namespace {

struct Features {
  int64_t in, out;
  DType dtype;  // what the LoRA path computes in
};

// The layers LoRA can wrap, with their sizes: a full-precision Linear (the adapter computes in its
// weight's dtype) and QLoRA's 4-bit base (in its compute dtype).
std::optional<Features> linear_features(const Module& m) {
  if (const auto* linear = dynamic_cast<const Linear*>(&m))
    return Features{linear->in_features(), linear->out_features(), linear->named_parameters().front().second.dtype()};
  if (const auto* nf4 = dynamic_cast<const Nf4Linear*>(&m))
    return Features{nf4->in_features(), nf4->out_features(), nf4->compute_dtype()};
  return std::nullopt;
}

// PEFT's rule: the full dotted path, or a suffix of it that starts at a dot.
bool matches(const std::string& path, const std::string& target) {
  return path == target || (path.size() > target.size() && path.ends_with(target) &&
                            path[path.size() - target.size() - 1] == '.');
}

std::string leaf(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

const Tensor& weight_of(const Module* m) { return m->named_parameters().front().second; }

}  // namespace

LoraLinear::LoraLinear(std::shared_ptr<UnaryModule> base, int64_t in_features, int64_t out_features,
                       const LoraSettings& settings, uint64_t seed, DType dtype, std::string path)
    : UnaryModule("LoraLinear"),
      base_(std::move(base)),
      in_features_(in_features),
      out_features_(out_features),
      rank_(settings.r),
      scaling_(settings.alpha / static_cast<double>(settings.r)),
      path_(std::move(path)) {
  const std::string where = path_.empty() ? "LoraLinear" : "LoraLinear '" + path_ + "'";
  SL_CHECK(base_ != nullptr, where, ": the base module is null");
  SL_CHECK(settings.r >= 1, where, ": r must be >= 1, got ", settings.r);
  SL_CHECK(in_features >= 1 && out_features >= 1, where, ": in/out features must be >= 1, got ", in_features, "/",
           out_features);
  // The base's tensors become this module's, under the same names (NOTE [LoRA parameter names]).
  for (auto& [name, t] : base_->named_parameters()) {
    SL_CHECK(name.find('.') == std::string::npos, where, ": the base ", base_->type_name(), " has a nested tensor '",
             name, "'; only a flat base can be wrapped");
    register_parameter(name, t, t.requires_grad());
    base_params_.push_back(name);
  }
  for (auto& [name, t] : base_->named_buffers()) {
    SL_CHECK(name.find('.') == std::string::npos, where, ": the base ", base_->type_name(), " has a nested tensor '",
             name, "'; only a flat base can be wrapped");
    register_buffer(name, t);
    base_buffers_.push_back(name);
  }
  // A is nn.Linear's default init (kaiming_uniform with a = sqrt(5)); B starts at zero, so a fresh
  // adapter leaves the base's output unchanged.
  register_module("lora_A", std::make_shared<Linear>(in_features, settings.r, false, seed, dtype));
  auto lora_b = register_module("lora_B", std::make_shared<Linear>(settings.r, out_features, false, seed + 1, dtype));
  {
    NoGradGuard no_grad;
    ops::fill_(weight_of(lora_b.get()), 0.0);
  }
  register_module("lora_dropout", std::make_shared<Dropout>(settings.dropout, seed + 2));
}

void LoraLinear::sync_base() const {
  for (const std::string& name : base_params_) base_->replace_tensor(name, tensor(name));
  for (const std::string& name : base_buffers_) base_->replace_tensor(name, tensor(name));
  base_->train(is_training());
}

Tensor LoraLinear::forward(const Tensor& x) {
  sync_base();
  Tensor y = (*base_)(x);  // (..., out)
  if (merged_) return y;
  Tensor h = unary_child("lora_A")(unary_child("lora_dropout")(x));  // (..., r)
  return y + unary_child("lora_B")(h) * scaling_;
}

void LoraLinear::apply_delta(double sign) {
  const std::string where = path_.empty() ? "LoraLinear" : "LoraLinear '" + path_ + "'";
  SL_CHECK(dynamic_cast<Linear*>(base_.get()) != nullptr, where, ": cannot merge into a ", base_->type_name(),
           " base (only a plain Linear's weight can absorb the adapter; a quantized base cannot)");
  NoGradGuard no_grad;
  const Tensor& w = tensor("weight");  // (out, in)
  const Tensor a = ops::to_dtype(weight_of(child("lora_A")), DType::f32);  // (r, in)
  const Tensor b = ops::to_dtype(weight_of(child("lora_B")), DType::f32);  // (out, r)
  const Tensor delta = ops::matmul(b, a);                                  // (out, in)
  if (w.dtype() == DType::f32) {
    ops::add_(w, delta, sign * scaling_);
  } else {
    Tensor w32 = ops::to_dtype(w, DType::f32);
    ops::add_(w32, delta, sign * scaling_);
    ops::copy_(w, w32);  // one rounding into W's dtype
  }
}

void LoraLinear::merge() {
  SL_CHECK(!merged_, "LoraLinear '", path_, "': already merged");
  apply_delta(+1.0);
  merged_ = true;
}

void LoraLinear::unmerge() {
  SL_CHECK(merged_, "LoraLinear '", path_, "': not merged");
  apply_delta(-1.0);
  merged_ = false;
}

std::shared_ptr<UnaryModule> LoraLinear::base() {
  sync_base();
  return base_;
}

std::vector<std::pair<std::string, LoraLinear*>> lora_modules(Module& model) {
  std::vector<std::pair<std::string, LoraLinear*>> out;
  for (auto& [path, m] : model.named_modules())
    if (auto* lora = dynamic_cast<LoraLinear*>(m)) out.emplace_back(path, lora);
  return out;
}

std::vector<std::string> apply_lora(Module& model, const LoraSettings& settings) {
  SL_CHECK(settings.r >= 1, "LoRA: r must be >= 1, got ", settings.r);
  SL_CHECK(settings.dropout >= 0.0 && settings.dropout < 1.0, "LoRA: dropout must be in [0, 1), got ", settings.dropout);
  SL_CHECK(!settings.target_modules.empty() || settings.target_linear,
           "LoRA: no target modules (name them in target_modules or set target_linear)");
  if (auto existing = lora_modules(model); !existing.empty())
    SL_FAIL("LoRA: the model already has LoRA layers (", existing.front().first, ")");

  std::vector<std::pair<std::string, Features>> selected;
  std::vector<bool> target_used(settings.target_modules.size(), false);
  for (auto& [path, m] : model.named_modules()) {
    if (path.empty()) continue;
    const std::optional<Features> features = linear_features(*m);
    bool wrap = false;
    for (size_t i = 0; i < settings.target_modules.size(); ++i) {
      if (!matches(path, settings.target_modules[i])) continue;
      SL_CHECK(features.has_value(), "LoRA: target module '", settings.target_modules[i], "' matches '", path, "' (",
               m->type_name(), "), which is not a linear layer");
      target_used[i] = true;
      wrap = true;
    }
    // PEFT's all-linear keeps the output layer full rank.
    if (settings.target_linear && features && leaf(path) != "lm_head") wrap = true;
    if (wrap) selected.emplace_back(path, *features);
  }
  for (size_t i = 0; i < settings.target_modules.size(); ++i)
    SL_CHECK(target_used[i], "LoRA: target module '", settings.target_modules[i], "' matches no module of the model");
  SL_CHECK(!selected.empty(), "LoRA: the model has no linear layer to adapt");

  std::vector<std::string> wrapped;
  for (size_t i = 0; i < selected.size(); ++i) {
    const auto& [path, f] = selected[i];
    auto base = std::dynamic_pointer_cast<UnaryModule>(model.child_ptr(path));
    const uint64_t seed = settings.seed * 1000003ULL + 4 * i + 1;
    auto lora = std::make_shared<LoraLinear>(base, f.in, f.out, settings, seed, f.dtype, path);
    lora->train(base->is_training());  // a model in eval mode keeps lora_dropout off
    model.replace_child(path, lora);
    wrapped.push_back(path);
  }
  // Only the adapters train: the base gets no gradient and no optimizer state.
  for (auto& [name, t] : model.named_parameters()) t.set_requires_grad(false);
  for (auto& [path, lora] : lora_modules(model))
    for (auto& [name, t] : lora->named_parameters())
      if (name.starts_with("lora_A.") || name.starts_with("lora_B.")) t.set_requires_grad(true);
  return wrapped;
}

std::vector<std::string> merge_lora(Module& model) {
  std::vector<std::string> merged;
  for (auto& [path, lora] : lora_modules(model)) {
    if (!lora->merged()) lora->merge();
    model.replace_child(path, lora->base());
    merged.push_back(path);
  }
  return merged;
}

}  // namespace shardlab::nn

// Module: a named tree of parameters, buffers and child modules (PyTorch's nn.Module). It owns
// registration, dotted names ("layers.0.self_attn.q_proj.weight"), train/eval mode, dtype and
// device moves, and state dicts with strict key, shape and dtype checks.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace shardlab::nn {

// Name -> tensor, ordered by registration (a vector of pairs keeps that order; lookups are rare).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class UnaryModule;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Dotted names, depth first in registration order (the order PyTorch uses).
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_modules();
  // The trainable parameters (requires_grad) only.
  std::vector<Tensor> trainable_parameters() const;
  int64_t num_parameters(bool trainable_only = false) const;

  // Replaces the parameter or buffer called `name` (dotted, relative to this module) in place:
  // used to swap in a converted tensor (dtype cast, device move, quantized weight).
  void replace_tensor(const std::string& name, const Tensor& value);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Casts floating parameters and buffers (parameters keep requires_grad).
  void to(DType dtype);
  // Moves every parameter and buffer to `device` (parameters keep requires_grad, tensors keep
  // their ledger tags). Gradients are not moved: move a model before training it.
  void to(Device device);

  // Parameters and buffers by dotted name (the tensors themselves, not copies).
  NamedTensors state_dict() const;
  // Copies values in. With `strict`, a missing or unexpected key is an error naming it; a shape
  // mismatch is always an error naming the key and both shapes; dtypes are converted.
  void load_state_dict(const NamedTensors& state, bool strict = true);

  Module* child(const std::string& name) const;
  // The direct child `name` as a one-in-one-out module, looked up at call time so that forward
  // code follows replace_child (a child that is not a UnaryModule is an error naming it).
  UnaryModule& unary_child(const std::string& name) const;
  // Swaps the child at a dotted path ("layers.0.self_attn.q_proj") for another module: how LoRA
  // wraps a linear and QLoRA swaps in a 4-bit one. Names of the new module's tensors follow from
  // the path. An unknown path is an error naming it.
  void replace_child(const std::string& dotted_name, std::shared_ptr<Module> module);
  // The shared pointer behind a dotted path (null when there is none).
  std::shared_ptr<Module> child_ptr(const std::string& dotted_name) const;

  // Forward pre/post hooks on any module: a pre hook runs before the module's forward, a post hook
  // after it and returns the output to use (it may wrap it in an op). This is how a sharding engine
  // gathers a unit's parameters before its forward and frees them after (FSDP's unit hooks).
  // UnaryModule::operator() runs them; a module with another forward signature calls
  // run_forward_pre_hooks() first and returns run_forward_post_hooks(output).
  using ForwardPreHook = std::function<void(Module&)>;
  using ForwardPostHook = std::function<Tensor(Module&, const Tensor& output)>;
  // Each returns a handle for remove_forward_pre_post_hook.
  int register_forward_pre_hook(ForwardPreHook hook);
  int register_forward_post_hook(ForwardPostHook hook);
  void remove_forward_pre_post_hook(int handle);
  void run_forward_pre_hooks();
  Tensor run_forward_post_hooks(Tensor output);

 protected:
  // Registers a parameter: tagged `parameter` in the memory ledger, requires_grad as given.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // Looks up a registered parameter or buffer (for forward code that reads it after replacement).
  const Tensor& tensor(const std::string& name) const;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::pair<int, ForwardPreHook>> pre_hooks_;
  std::vector<std::pair<int, ForwardPostHook>> post_hooks_;
  int next_pre_post_hook_ = 0;
};

// A module with one tensor in and one out, with forward hooks that observe (input, output).
class UnaryModule : public Module {
 public:
  using ForwardHook = std::function<void(const Module&, const Tensor& input, const Tensor& output)>;
  using Module::Module;
  Tensor operator()(const Tensor& input);
  virtual Tensor forward(const Tensor& input) = 0;
  // Returns a handle for remove_forward_hook.
  int register_forward_hook(ForwardHook hook);
  void remove_forward_hook(int handle);

 private:
  std::vector<std::pair<int, ForwardHook>> hooks_;
  int next_hook_ = 0;
};

}  // namespace shardlab::nn

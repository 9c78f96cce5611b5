// Module registration, traversal and state dicts.
#include "nn/module.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "core/trace.h"

namespace shardlab::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }

Tensor* find(NamedTensors& list, const std::string& name) {
  for (auto& [n, t] : list)
    if (n == name) return &t;
  return nullptr;
}
}  // namespace

void Module::check_new_name(const std::string& name) const {
  SL_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_, ": invalid member name '", name,
           "' (must be non-empty and contain no '.')");
  bool taken = std::any_of(params_.begin(), params_.end(), [&](auto& p) { return p.first == name; }) ||
               std::any_of(buffers_.begin(), buffers_.end(), [&](auto& p) { return p.first == name; }) ||
               std::any_of(children_.begin(), children_.end(), [&](auto& p) { return p.first == name; });
  SL_CHECK(!taken, type_name_, ": '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad) {
  check_new_name(name);
  SL_CHECK(value.defined(), type_name_, ": parameter '", name, "' is undefined");
  value.retag(MemTag::parameter);
  if (is_floating(value.dtype())) value.set_requires_grad(requires_grad);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  SL_CHECK(module != nullptr, type_name_, ": child module '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

const Tensor& Module::tensor(const std::string& name) const {
  for (auto& [n, t] : params_)
    if (n == name) return t;
  for (auto& [n, t] : buffers_)
    if (n == name) return t;
  SL_FAIL(type_name_, ": no parameter or buffer named '", name, "'");
}

Module* Module::child(const std::string& name) const {
  for (auto& [n, m] : children_)
    if (n == name) return m.get();
  return nullptr;
}

std::shared_ptr<Module> Module::child_ptr(const std::string& dotted_name) const {
  const auto dot = dotted_name.find('.');
  const std::string head = dotted_name.substr(0, dot);
  for (auto& [n, m] : children_) {
    if (n != head) continue;
    return dot == std::string::npos ? m : m->child_ptr(dotted_name.substr(dot + 1));
  }
  return nullptr;
}

void Module::replace_child(const std::string& dotted_name, std::shared_ptr<Module> module) {
  SL_CHECK(module != nullptr, type_name_, ": replace_child('", dotted_name, "') with a null module");
  const auto dot = dotted_name.rfind('.');
  Module* parent = this;
  if (dot != std::string::npos) {
    std::shared_ptr<Module> p = child_ptr(dotted_name.substr(0, dot));
    parent = p.get();
  }
  const std::string leaf = dot == std::string::npos ? dotted_name : dotted_name.substr(dot + 1);
  if (parent != nullptr) {
    for (auto& [n, m] : parent->children_) {
      if (n == leaf) {
        m = std::move(module);
        return;
      }
    }
  }
  SL_FAIL(type_name_, ": replace_child: no child module named '", dotted_name, "'");
}

UnaryModule& Module::unary_child(const std::string& name) const {
  Module* m = child(name);
  SL_CHECK(m != nullptr, type_name_, ": no child module named '", name, "'");
  auto* unary = dynamic_cast<UnaryModule*>(m);
  SL_CHECK(unary != nullptr, type_name_, ": child '", name, "' (", m->type_name(), ") is not a one-input module");
  return *unary;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (auto& [n, t] : params_) out.emplace_back(join(prefix, n), t);
  if (buffers)
    for (auto& [n, t] : buffers_) out.emplace_back(join(prefix, n), t);
  for (auto& [n, m] : children_) m->collect(join(prefix, n), params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (!trainable_only || t.requires_grad()) n += t.numel();
  return n;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  // Iterative pre-order walk.
  std::vector<std::pair<std::string, Module*>> stack = {{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    out.emplace_back(prefix, m);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(join(prefix, it->first), it->second.get());
  }
  return out;
}

void Module::replace_tensor(const std::string& name, const Tensor& value) {
  auto dot = name.find('.');
  if (dot != std::string::npos) {
    Module* c = child(name.substr(0, dot));
    SL_CHECK(c != nullptr, type_name_, ": no child module '", name.substr(0, dot), "' (replacing '", name, "')");
    c->replace_tensor(name.substr(dot + 1), value);
    return;
  }
  if (Tensor* p = find(params_, name)) {
    *p = value;
    return;
  }
  if (Tensor* b = find(buffers_, name)) {
    *b = value;
    return;
  }
  SL_FAIL(type_name_, ": no parameter or buffer named '", name, "'");
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  for (auto& [n, t] : params_) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) continue;
    bool trainable = t.requires_grad();
    MemTagScope tag(MemTag::parameter);
    t = ops::to_dtype(t, dtype);
    t.set_requires_grad(trainable);
  }
  for (auto& [n, t] : buffers_)
    if (is_floating(t.dtype())) t = ops::to_dtype(t, dtype);
  for (auto& [n, m] : children_) m->to(dtype);
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [n, t] : params_) {
    if (t.device() == device) continue;
    const bool trainable = t.requires_grad();
    MemTagScope tag(MemTag::parameter);
    t = t.to(device);
    t.set_requires_grad(trainable);
  }
  for (auto& [n, t] : buffers_) {
    if (t.device() == device) continue;
    MemTagScope tag(t.tag());
    t = t.to(device);
  }
  for (auto& [n, m] : children_) m->to(device);
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  NoGradGuard no_grad;
  NamedTensors mine = state_dict();
  std::map<std::string, const Tensor*> given;
  for (auto& [n, t] : state) {
    SL_CHECK(given.emplace(n, &t).second, "load_state_dict: key '", n, "' appears twice");
  }
  std::string missing;
  for (auto& [n, t] : mine) {
    auto it = given.find(n);
    if (it == given.end()) {
      missing += (missing.empty() ? "" : ", ") + n;
      continue;
    }
    const Tensor& src = *it->second;
    SL_CHECK(src.shape() == t.shape(), "load_state_dict: '", n, "' has shape ", shape_str(src.shape()),
             " in the checkpoint but ", shape_str(t.shape()), " in the model");
    ops::copy_(t, src);
    given.erase(it);
  }
  if (strict) {
    SL_CHECK(missing.empty(), "load_state_dict: missing keys: ", missing);
    if (!given.empty()) {
      std::string unexpected;
      for (auto& [n, t] : given) unexpected += (unexpected.empty() ? "" : ", ") + n;
      SL_FAIL("load_state_dict: unexpected keys: ", unexpected);
    }
  }
}

int Module::register_forward_pre_hook(ForwardPreHook hook) {
  pre_hooks_.emplace_back(next_pre_post_hook_, std::move(hook));
  return next_pre_post_hook_++;
}

int Module::register_forward_post_hook(ForwardPostHook hook) {
  post_hooks_.emplace_back(next_pre_post_hook_, std::move(hook));
  return next_pre_post_hook_++;
}

void Module::remove_forward_pre_post_hook(int handle) {
  std::erase_if(pre_hooks_, [&](auto& h) { return h.first == handle; });
  std::erase_if(post_hooks_, [&](auto& h) { return h.first == handle; });
}

void Module::run_forward_pre_hooks() {
  for (auto& [id, hook] : pre_hooks_) hook(*this);
}

Tensor Module::run_forward_post_hooks(Tensor output) {
  for (auto& [id, hook] : post_hooks_) output = hook(*this, output);
  return output;
}

Tensor UnaryModule::operator()(const Tensor& input) {
  const trace::Scope span(trace::Category::module, [this] { return type_name(); });
  run_forward_pre_hooks();
  Tensor output = run_forward_post_hooks(forward(input));
  for (auto& [id, hook] : hooks_) hook(*this, input, output);
  return output;
}

int UnaryModule::register_forward_hook(ForwardHook hook) {
  hooks_.emplace_back(next_hook_, std::move(hook));
  return next_hook_++;
}

void UnaryModule::remove_forward_hook(int handle) {
  std::erase_if(hooks_, [&](auto& h) { return h.first == handle; });
}

}  // namespace shardlab::nn

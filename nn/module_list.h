// ModuleList: a container whose children are named "0", "1", ... (as torch.nn.ModuleList), so
// that parameter names read "layers.3.mlp.up_proj.weight".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace shardlab::nn {

class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  void append(std::shared_ptr<Module> module) {
    register_module(std::to_string(items_.size()), module);
    items_.push_back(std::move(module));
  }
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) const { return *items_.at(i); }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace shardlab::nn

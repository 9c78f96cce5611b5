// Helpers every optimizer uses for its state tensors: allocation under the optimizer_state ledger
// tag, lookup by name in a state dict, and strict loading (name, shape and dtype checked).
#pragma once

#include <string>
#include <string_view>

#include "core/tensor.h"
#include "nn/module.h"

namespace shardlab::nn::optimizer_state {

// Zeros tagged MemTag::optimizer_state.
Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
// The tensor called `name`, or nullptr.
const Tensor* find(const NamedTensors& state, std::string_view name);
// A fresh optimizer_state tensor on `device` (its parameter's) holding a copy of state[name]; a
// missing name, another shape or another dtype is an error naming `who` (the optimizer) and the entry.
Tensor load(const NamedTensors& state, const std::string& name, const Shape& shape, DType dtype, Device device,
            const char* who);

}  // namespace shardlab::nn::optimizer_state

// Optimizer state allocation, lookup and loading.
#include "nn/optimizer_state.h"

#include "autograd/grad_mode.h"
#include "core/ops.h"

namespace shardlab::nn::optimizer_state {

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  MemTagScope tag(MemTag::optimizer_state);
  return Tensor::zeros(shape, dtype, device);
}

const Tensor* find(const NamedTensors& state, std::string_view name) {
  for (auto& [n, t] : state)
    if (n == name) return &t;
  return nullptr;
}

Tensor load(const NamedTensors& state, const std::string& name, const Shape& shape, DType dtype, Device device,
            const char* who) {
  const Tensor* src = find(state, name);
  SL_CHECK(src != nullptr, who, " load_state_dict: missing '", name, "'");
  SL_CHECK(src->shape() == shape && src->dtype() == dtype, who, " load_state_dict: '", name, "' is ",
           dtype_name(src->dtype()), " ", shape_str(src->shape()), " but ", dtype_name(dtype), " ", shape_str(shape),
           " is expected");
  NoGradGuard no_grad;
  Tensor dst = zeros(shape, dtype, device);
  ops::copy_(dst, *src);
  return dst;
}

}  // namespace shardlab::nn::optimizer_state

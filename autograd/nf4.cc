// Backward of nf4_linear: dx = dy @ dequant(W), dequantized tile by tile again (nothing but the
// 4-bit weight is saved). The base weight is frozen, so there is no weight gradient to compute.
#include "autograd/nf4.h"

#include "autograd/record.h"

namespace shardlab {

Tensor nf4_linear(const Tensor& x, const Nf4Tensor& w) {
  for (const Tensor* part : {&w.packed, &w.absmax_codes, &w.nested_absmax, &w.offset})
    SL_CHECK(!part->defined() || !part->requires_grad(), "nf4_linear: the NF4 weight of shape ", shape_str(w.shape),
             " is frozen and has no gradient; train an adapter (LoRA) beside it instead");
  Tensor out = ops::nf4_linear(x, w);
  if (needs_grad({x})) {
    // The weight's tensors are saved with their versions: an in-place edit (load_state_dict into
    // the module's buffers) between forward and backward is caught on unpack.
    record("nf4_linear", {x}, {out},
           [packed = SavedTensor(w.packed), codes = SavedTensor(w.absmax_codes), nested = SavedTensor(w.nested_absmax),
            offset = SavedTensor(w.offset), shape = w.shape, dtype = w.dtype](const Grads& g) {
             const char* op = "nf4_linear";
             Nf4Tensor saved{packed.unpack(op), codes.unpack(op), nested.unpack(op), offset.unpack(op), shape, dtype};
             return Grads{ops::nf4_linear_backward_input(g[0], saved)};
           });
  }
  return out;
}

}  // namespace shardlab

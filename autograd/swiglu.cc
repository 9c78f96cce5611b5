// Differentiable SwiGLU (silu(gate) * up): backward recomputes the sigmoid from the saved gate
// and up, so the silu activation itself is never stored.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  Tensor out = ops::swiglu_fwd(gate, up);
  if (needs_grad({gate, up}))
    record("swiglu", {gate, up}, {out}, [sg = SavedTensor(gate), su = SavedTensor(up)](const Grads& g) {
      ops::SwigluGrads d = ops::swiglu_bwd(g[0], sg.unpack("swiglu"), su.unpack("swiglu"));
      return Grads{d.dgate, d.dup};
    });
  return out;
}

}  // namespace shardlab

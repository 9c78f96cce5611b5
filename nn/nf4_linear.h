// Nf4Linear: a frozen Linear (no bias) whose weight lives as NF4 (bitsandbytes' Linear4bit with
// quant_type nf4, blocksize 64 and double quantization): QLoRA's base projection.
#pragma once

#include <memory>

#include "core/ops/nf4.h"
#include "nn/module.h"

namespace shardlab::nn {

// y = x W^T with W dequantized tile by tile inside the op; gradients flow to x only. The quantized
// weight is four buffers (module tensor names cannot contain '.', so bnb's "weight.absmax" etc.
// become "weight_absmax" etc.), all counted under the ledger's `parameter` tag:
//   weight                u8  (ceil(out * in / 2),)  two 4-bit codes per byte, first in the high nibble
//   weight_absmax         u8  (ceil(out * in / 64),) absmax - offset, 8-bit dynamic-map codes
//   weight_nested_absmax  f32 (ceil(blocks / 256),)
//   weight_nested_offset  f32 (1,)
// Those f32 buffers must stay f32: call Module::to(dtype) before quantizing, not after.
class Nf4Linear : public UnaryModule {
 public:
  // `weight` is a 2-D (out_features, in_features) NF4 weight; inputs must have compute_dtype.
  Nf4Linear(const Nf4Tensor& weight, DType compute_dtype);
  // Quantizes a full-precision (out_features, in_features) weight.
  static std::shared_ptr<Nf4Linear> quantize(const Tensor& weight, DType compute_dtype);

  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out), compute dtype
  int64_t in_features() const { return shape_[1]; }
  int64_t out_features() const { return shape_[0]; }
  DType compute_dtype() const { return compute_dtype_; }
  // The quantized weight as the buffers hold it now (after any load_state_dict).
  Nf4Tensor weight() const;

 private:
  Shape shape_;
  DType original_dtype_;
  DType compute_dtype_;
};

}  // namespace shardlab::nn

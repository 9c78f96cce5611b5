// The precision policy of a training run, decided once from the config: the dtype parameters are
// stored and computed in, the optimizer's master copies, the dtype gradients are reduced in across
// ranks (read by the distributed layer), the loss dtype, and whether the loss is scaled.
#pragma once

#include <optional>
#include <string>

#include "core/dtype.h"

namespace shardlab::nn {

struct PrecisionPolicy {
  DType param_dtype = DType::f32;   // storage and compute (16-bit ops accumulate in f32)
  DType master_dtype = DType::f32;  // the optimizer's copy of 16-bit parameters
  DType reduce_dtype = DType::f32;  // gradient collectives
  DType loss_dtype = DType::f32;    // the loss is always computed and accumulated in f32
  bool loss_scaling = false;        // f16 only: the dynamic loss scaler

  bool uses_master_weights() const { return param_dtype == DType::bf16 || param_dtype == DType::f16; }
  std::string describe() const;  // "params bf16, masters f32, reduce bf16, loss f32, no loss scaling"
};

// bf16 / fp16 from the resolved config (at most one true). reduce_dtype defaults to the parameter
// dtype, as DeepSpeed (communication_data_type unset) and FSDP2 (reduce_dtype unset) do; a 16-bit
// reduce dtype is only allowed for 16-bit parameters.
PrecisionPolicy make_precision_policy(bool bf16, bool fp16, std::optional<DType> reduce_dtype = std::nullopt);

}  // namespace shardlab::nn

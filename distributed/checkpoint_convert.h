// Offline conversion of a sharded checkpoint into one Hugging Face model.safetensors (like
// DeepSpeed's zero_to_fp32.py): full tensors assembled from the index, written one at a time.
#pragma once

#include <string>

#include "core/dtype.h"

namespace shardlab::dist {

// Writes `out_dir`/model.safetensors with every parameter of the sharded checkpoint `sharded_dir`
// whole, in `dtype` (its global shape, the parameter's name), and copies config.json when the
// checkpoint has one, with torch_dtype set to `dtype`. Streams: the header is computed from the
// index, then each tensor is assembled, written and freed before the next, so memory holds one
// tensor at a time. The file is written atomically. Returns the number of tensors written.
// Errors name the missing or truncated shard file, or the tensor and element range with no piece;
// a checkpoint of LoRA adapters is refused (it already holds the complete PEFT adapter).
int64_t convert_sharded_to_safetensors(const std::string& sharded_dir, const std::string& out_dir, DType dtype);

}  // namespace shardlab::dist

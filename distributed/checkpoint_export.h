// FULL_STATE_DICT: the trained parameters gathered whole onto rank 0 one bucket (unit) at a time,
// so no rank ever holds more than one unit's full parameters beyond rank 0's output.
#pragma once

#include "distributed/data_parallel.h"
#include "nn/module.h"

namespace shardlab::dist {

// Collective. Returns on rank 0 every parameter the engine trains, whole, with its name from
// `named` (the model's named_parameters() the engine was built on) and shape, in `dtype`
// (rounded from the fp32 masters of 16-bit runs); other ranks get an empty list. Per bucket,
// ZeRO ranks (ZeRO-3 and hybrid: the buckets are the sharded units) all-gather their shards over
// the shard group into one transient bucket-sized buffer (MemTag::communication), freed before the
// next; DDP needs no communication. The output is tagged MemTag::other.
nn::NamedTensors gather_full_parameters(const DataParallelEngine& engine, const nn::NamedTensors& named, DType dtype);

}  // namespace shardlab::dist

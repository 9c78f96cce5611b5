// The data-parallel settings of a train config: the sharding preset and DeepSpeed's
// zero_optimization knobs, filled from `deepspeed: ds.json` (and later `fsdp:` blocks).
#pragma once

#include <cstdint>
#include <string>

namespace shardlab::config {

struct DistributedSettings {
  int64_t zero_stage = 0;  // DeepSpeed's zero_optimization.stage (0: DDP)

  bool operator==(const DistributedSettings&) const = default;
};

}  // namespace shardlab::config

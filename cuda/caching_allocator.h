// The allocator behind Device::cuda storage (installed by cuda::initialize()).
#pragma once

#include "core/storage.h"

namespace shardlab::cuda {

Allocator& device_caching_allocator();

}  // namespace shardlab::cuda

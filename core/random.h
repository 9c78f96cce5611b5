// Counter-based random numbers (Philox4x32-10): the value for element i is a pure function of
// (seed, i), so random tensors are identical whatever the thread count or evaluation order.
#pragma once

#include <array>
#include <cstdint>

namespace shardlab {

std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t counter);
// Uniform in (0, 1) with 53 random bits, from the counter's first two words.
double uniform01(uint64_t seed, uint64_t counter);
// Standard normal by Box-Muller on the counter's four words.
double standard_normal(uint64_t seed, uint64_t counter);

}  // namespace shardlab

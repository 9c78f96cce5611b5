// The bucket layout of a data-parallel engine: which parameters share a flat buffer, where each
// one sits in it, and how every bucket is padded and cut into equal per-rank shards.
#pragma once

#include <cstdint>
#include <vector>

namespace shardlab::dist {

struct BucketSlot {
  int param = 0;        // index into the engine's parameter list (registration order)
  int64_t offset = 0;   // first element in the bucket's flat buffer
  int64_t numel = 0;
};

struct BucketLayout {
  std::vector<BucketSlot> slots;  // in fill order
  int64_t numel = 0;              // elements of the parameters
  int64_t padded_numel = 0;       // numel rounded up to a multiple of the world size (zeros at the end)
  int64_t shard_numel = 0;        // padded_numel / world size: every rank's shard is the same size
  // Rank r owns elements [r * shard_numel, (r + 1) * shard_numel).
  int64_t shard_offset(int rank) const { return rank * shard_numel; }
};

// Buckets of at most `bucket_size` elements (a larger parameter gets a bucket of its own), filled
// with the parameters in REVERSE registration order, as DDP does: backward produces the last
// layers' gradients first, so the first bucket fills first and its collective can start while
// backward is still running. `numels` are the parameters' sizes in registration order.
std::vector<BucketLayout> plan_buckets(const std::vector<int64_t>& numels, int64_t bucket_size, int world_size);

// Consecutive bucket ranges [first, last) whose shards together hold at most `gather_size`
// elements (at least one bucket each): the all-gathers of updated parameters.
struct BucketRange {
  int first = 0;
  int last = 0;
};
std::vector<BucketRange> plan_gather_groups(const std::vector<BucketLayout>& buckets, int64_t gather_size,
                                            int world_size);

}  // namespace shardlab::dist

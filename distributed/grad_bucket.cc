// Bucket planning: reverse-order greedy filling, padding, shards and all-gather groups.
#include "distributed/grad_bucket.h"

#include "core/error.h"

namespace shardlab::dist {

std::vector<BucketLayout> plan_buckets(const std::vector<int64_t>& numels, int64_t bucket_size, int world_size) {
  SL_CHECK(bucket_size > 0, "plan_buckets: bucket size must be > 0 (got ", bucket_size, ")");
  SL_CHECK(world_size >= 1, "plan_buckets: world size must be >= 1 (got ", world_size, ")");
  std::vector<BucketLayout> buckets;
  for (int i = static_cast<int>(numels.size()) - 1; i >= 0; --i) {
    SL_CHECK(numels[i] > 0, "plan_buckets: parameter ", i, " has no elements");
    if (buckets.empty() || (buckets.back().numel > 0 && buckets.back().numel + numels[i] > bucket_size))
      buckets.emplace_back();
    BucketLayout& b = buckets.back();
    b.slots.push_back({i, b.numel, numels[i]});
    b.numel += numels[i];
  }
  for (BucketLayout& b : buckets) {
    b.padded_numel = (b.numel + world_size - 1) / world_size * world_size;
    b.shard_numel = b.padded_numel / world_size;
  }
  return buckets;
}

std::vector<BucketRange> plan_gather_groups(const std::vector<BucketLayout>& buckets, int64_t gather_size,
                                            int world_size) {
  SL_CHECK(gather_size > 0, "plan_gather_groups: all-gather bucket size must be > 0 (got ", gather_size, ")");
  std::vector<BucketRange> groups;
  int64_t in_group = 0;  // elements gathered by the open group (all ranks' shards)
  for (int b = 0; b < static_cast<int>(buckets.size()); ++b) {
    const int64_t gathered = buckets[b].shard_numel * world_size;
    if (groups.empty() || in_group + gathered > gather_size) {
      groups.push_back({b, b});
      in_group = 0;
    }
    groups.back().last = b + 1;
    in_group += gathered;
  }
  return groups;
}

}  // namespace shardlab::dist

// The caching allocator's bookkeeping (cuda/block_cache.h) on a fake backend: runs on the CPU, no
// GPU needed. Size classes, reuse per stream, splitting/merging, event-held cross-stream frees,
// empty_cache, out-of-memory recovery and a randomized no-overlap check.
#include "cuda/block_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/error.h"

namespace shardlab::cuda {
namespace {

using ::testing::HasSubstr;
constexpr size_t KiB = 1024, MiB = 1024 * 1024;

// Hands out addresses from a fake address space (never dereferenced), up to `capacity` bytes at
// once; events complete only when the test says so.
class FakeBackend final : public CacheBackend {
 public:
  explicit FakeBackend(size_t capacity = size_t{1} << 40) : capacity_(capacity) {}
  void* allocate_segment(size_t bytes) override {
    if (in_use_ + bytes > capacity_) return nullptr;
    in_use_ += bytes;
    const uint64_t base = next_;
    next_ += (bytes + MiB) / MiB * MiB + MiB;  // a gap between segments: merging across them would show
    segments_[base] = bytes;
    return reinterpret_cast<void*>(base);
  }
  void free_segment(void* ptr, size_t bytes) override {
    auto it = segments_.find(reinterpret_cast<uint64_t>(ptr));
    ASSERT_NE(it, segments_.end()) << "freeing a segment that was never handed out";
    ASSERT_EQ(it->second, bytes) << "segment freed with another size than it had";
    in_use_ -= bytes;
    segments_.erase(it);
  }
  uint64_t record_event(StreamId stream) override {
    recorded_on.push_back(stream);
    events_[++last_event_] = false;
    return last_event_;
  }
  bool event_completed(uint64_t e) override { return events_.at(e); }
  void destroy_event(uint64_t e) override { events_.erase(e); }

  void complete_all_events() {
    for (auto& [e, done] : events_) done = true;
  }
  size_t in_use() const { return in_use_; }
  size_t live_segments() const { return segments_.size(); }
  size_t live_events() const { return events_.size(); }
  std::vector<StreamId> recorded_on;

 private:
  size_t capacity_;
  size_t in_use_ = 0;
  uint64_t next_ = uint64_t{1} << 32;
  std::map<uint64_t, size_t> segments_;
  std::map<uint64_t, bool> events_;
  uint64_t last_event_ = 0;
};

char* as_bytes(void* p) { return static_cast<char*>(p); }

TEST(BlockCache, RoundsRequestsTo512Bytes) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  EXPECT_EQ(cache.round_size(1), 512u);
  EXPECT_EQ(cache.round_size(512), 512u);
  EXPECT_EQ(cache.round_size(513), 1024u);
  EXPECT_EQ(cache.round_size(3 * MiB + 1), 3 * MiB + 512);
}

TEST(BlockCache, SmallRequestsShareOneTwoMiBSegment) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(100, 1);
  void* b = cache.allocate(1000, 1);
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 512);  // carved from the same segment, right after a
  const BlockCacheStats s = cache.stats();
  EXPECT_EQ(s.segments, 1);
  EXPECT_EQ(s.reserved_bytes, int64_t(2 * MiB));
  EXPECT_EQ(s.allocated_bytes, 512 + 1024);
  EXPECT_EQ(s.requested_bytes, 100 + 1000);
  EXPECT_EQ(s.cache_hits, 1);  // the second came from the first segment's free remainder
  cache.free(a);
  cache.free(b);
}

TEST(BlockCache, LargeRequestsGetTwentyMiBOrTheirOwnRoundedSegment) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(3 * MiB, 1);  // under 10 MiB: a 20 MiB segment
  EXPECT_EQ(cache.stats().reserved_bytes, int64_t(20 * MiB));
  void* b = cache.allocate(11 * MiB, 1);  // the 17 MiB remainder of the first segment fits it
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 3 * MiB);
  EXPECT_EQ(cache.stats().segments, 1);
  void* c = cache.allocate(11 * MiB, 1);  // only 6 MiB left there: its own 12 MiB segment
  EXPECT_EQ(cache.stats().reserved_bytes, int64_t(32 * MiB));
  EXPECT_EQ(cache.stats().segments, 2);
  void* d = cache.allocate(900 * KiB, 1);  // small: never carved from a large segment
  EXPECT_EQ(cache.stats().reserved_bytes, int64_t(34 * MiB));
  for (void* p : {a, b, c, d}) cache.free(p);
}

TEST(BlockCache, FreedBlockIsReusedOnTheSameStreamWithoutANewSegment) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(5 * MiB, 7);
  cache.free(a);
  void* b = cache.allocate(5 * MiB, 7);
  EXPECT_EQ(a, b);
  EXPECT_EQ(cache.stats().segment_allocations, 1);
  EXPECT_EQ(cache.stats().cache_hits, 1);
  cache.free(b);
}

TEST(BlockCache, AnotherStreamDoesNotReuseTheBlock) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(5 * MiB, 1);
  cache.free(a);
  void* b = cache.allocate(5 * MiB, 2);
  EXPECT_NE(a, b);
  EXPECT_EQ(cache.stats().segment_allocations, 2);
  cache.free(b);
}

TEST(BlockCache, FreeNeighboursMergeBackIntoTheWholeSegment) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(512, 1);
  void* b = cache.allocate(1024, 1);
  void* c = cache.allocate(2048, 1);
  EXPECT_EQ(cache.describe(), "small segment stream 1: 512* 1024* 2048* " + std::to_string(2 * MiB - 3584) + "\n");
  cache.free(b);
  cache.free(a);  // merges with b
  EXPECT_EQ(cache.describe(), "small segment stream 1: 1536 2048* " + std::to_string(2 * MiB - 3584) + "\n");
  void* d = cache.allocate(1536, 1);  // the merged hole fits exactly
  EXPECT_EQ(d, a);
  cache.free(d);
  cache.free(c);  // everything merges
  EXPECT_EQ(cache.describe(), "small segment stream 1: " + std::to_string(2 * MiB) + "\n");
  EXPECT_EQ(cache.stats().allocated_bytes, 0);
}

TEST(BlockCache, CrossStreamFreeWaitsForTheOtherStreamsEvent) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(4 * KiB, 1);
  cache.record_stream(a, 2);
  cache.record_stream(a, 1);  // its own stream needs no event
  cache.free(a);
  EXPECT_EQ(backend.recorded_on, std::vector<StreamId>{2});
  EXPECT_EQ(cache.stats().pending_frees, 1);
  void* b = cache.allocate(4 * KiB, 1);
  EXPECT_NE(a, b) << "a block still in use on stream 2 was handed out again";
  backend.complete_all_events();
  cache.free(b);
  void* c = cache.allocate(4 * KiB, 1);
  EXPECT_EQ(c, a) << "once stream 2 is done the block is reusable (lowest address first)";
  EXPECT_EQ(cache.stats().pending_frees, 0);
  EXPECT_EQ(backend.live_events(), 0u);
  cache.free(c);
}

TEST(BlockCache, EmptyCacheReleasesOnlyWhollyFreeSegments) {
  FakeBackend backend;
  int64_t reserved_seen = 0;
  BlockCache cache(backend, "test", {}, [&](int64_t delta) { reserved_seen += delta; });
  void* keep = cache.allocate(1 * KiB, 1);
  void* drop_small = cache.allocate(1 * KiB, 2);
  void* drop_large = cache.allocate(12 * MiB, 1);
  cache.free(drop_small);
  cache.free(drop_large);
  EXPECT_EQ(reserved_seen, int64_t(2 * MiB + 2 * MiB + 12 * MiB));
  cache.empty_cache();
  EXPECT_EQ(cache.stats().reserved_bytes, int64_t(2 * MiB));
  EXPECT_EQ(reserved_seen, int64_t(2 * MiB));
  EXPECT_EQ(backend.live_segments(), 1u);
  cache.free(keep);
  cache.empty_cache();
  EXPECT_EQ(reserved_seen, 0);
  EXPECT_EQ(backend.in_use(), 0u);
  EXPECT_EQ(cache.stats().segment_frees, 3);
}

TEST(BlockCache, OutOfMemoryEmptiesTheCacheAndRetries) {
  FakeBackend backend(24 * MiB);
  BlockCache cache(backend, "cuda:0 caching allocator");
  void* a = cache.allocate(12 * MiB, 1);  // a 12 MiB segment
  cache.free(a);                          // cached on stream 1
  void* b = cache.allocate(20 * MiB, 2);  // 12 + 20 > 24: needs the cached segment released
  EXPECT_EQ(cache.stats().oom_retries, 1);
  EXPECT_EQ(cache.stats().reserved_bytes, int64_t(20 * MiB));
  try {
    cache.allocate(8 * MiB, 2);  // a 20 MiB segment would be needed; 4 MiB are left
    FAIL() << "allocation past the capacity did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cuda:0 caching allocator: out of memory allocating 8388608 bytes"));
    EXPECT_THAT(e.what(), HasSubstr("20.00 MiB reserved"));
    EXPECT_THAT(e.what(), HasSubstr("20.00 MiB allocated by live tensors"));
  }
  cache.free(b);
}

TEST(BlockCache, UnknownOrDoubleFreeIsAnError) {
  FakeBackend backend;
  BlockCache cache(backend, "test");
  void* a = cache.allocate(64, 1);
  cache.free(a);
  EXPECT_THROW(cache.free(a), Error);
  int x = 0;
  EXPECT_THROW(cache.free(&x), Error);
  EXPECT_THROW(cache.allocate(0, 1), Error);
}

TEST(BlockCache, RandomTrafficNeverOverlapsLiveBlocksAndReturnsEverything) {
  FakeBackend backend(size_t{4} << 30);
  BlockCache cache(backend, "test");
  std::mt19937_64 rng(1234);
  struct Live {
    char* p;
    size_t n;
  };
  std::vector<Live> live;
  std::map<char*, size_t> by_address;
  for (int step = 0; step < 4000; ++step) {
    const bool do_free = !live.empty() && (rng() % 100 < 45 || live.size() > 100);
    if (do_free) {
      const size_t i = rng() % live.size();
      by_address.erase(live[i].p);
      cache.free(live[i].p);
      live[i] = live.back();
      live.pop_back();
      continue;
    }
    // Mostly small sizes, some large ones; two streams; sometimes a cross-stream use.
    const size_t n = rng() % 10 < 8 ? 1 + rng() % (64 * KiB) : 1 * MiB + rng() % (24 * MiB);
    const StreamId stream = 1 + rng() % 2;
    char* p = static_cast<char*>(cache.allocate(n, stream));
    auto next = by_address.lower_bound(p);
    if (next != by_address.end()) {
      ASSERT_LE(p + n, next->first) << "overlaps the next live block at step " << step;
    }
    if (next != by_address.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second, p) << "overlaps the previous live block at step " << step;
    }
    by_address[p] = n;
    live.push_back({p, n});
    if (rng() % 10 == 0) cache.record_stream(p, 3);
    if (rng() % 50 == 0) backend.complete_all_events();
  }
  for (const Live& l : live) cache.free(l.p);
  backend.complete_all_events();
  cache.empty_cache();
  const BlockCacheStats s = cache.stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.requested_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.pending_frees, 0);
  EXPECT_EQ(backend.in_use(), 0u) << "every segment went back to the backend";
  EXPECT_GT(s.cache_hits, s.allocations / 2) << "most requests should be served from the cache";
}

}  // namespace
}  // namespace shardlab::cuda

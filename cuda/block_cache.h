// The bookkeeping of a caching allocator, free of any CUDA call so that it is unit-tested on the
// CPU: size classes, best-fit reuse per stream, block splitting and merging, cross-stream frees
// held back by events, empty_cache and stats. cuda/caching_allocator.cc puts cudaMalloc under it
// for device memory and cudaHostAlloc for pinned host memory.
//
// NOTE [caching allocator design] (after PyTorch's CUDACachingAllocator)
// - Requests round up to 512 bytes. Requests up to 1 MiB ("small") are carved from 2 MiB
//   segments; larger ones from 20 MiB segments when under 10 MiB, else from a segment of the
//   request rounded up to 2 MiB. Small and large blocks never share a segment, so small
//   allocations cannot fragment the large pool.
// - A freed block goes back to the pool of the stream it was allocated on and merges with free
//   neighbours of its segment. Reuse on the same stream needs no synchronisation: work queued on
//   one stream runs in order, so later kernels see the memory only after earlier ones are done.
// - A block also used on another stream (record_stream) is not reusable when freed: an event is
//   recorded on each of those streams, and the block returns to its pool only when all have
//   completed.
// - When a segment cannot be had, every fully free cached segment is released and the request
//   tried once more before an out-of-memory error that prints the allocator's state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace shardlab::cuda {

// An opaque stream handle (a cudaStream_t's bits on the GPU, any number in tests).
using StreamId = uint64_t;

// Where segments and events come from: cudaMalloc / cudaEvent* for device memory, fakes in tests.
class CacheBackend {
 public:
  virtual ~CacheBackend() = default;
  // `bytes` of fresh memory, or nullptr when there is none (out of memory is not an exception here).
  virtual void* allocate_segment(size_t bytes) = 0;
  virtual void free_segment(void* ptr, size_t bytes) = 0;
  // Records a marker on `stream` that completes once the work queued there so far is done.
  virtual uint64_t record_event(StreamId stream) = 0;
  virtual bool event_completed(uint64_t event) = 0;
  virtual void destroy_event(uint64_t event) = 0;
};

struct BlockCacheStats {
  int64_t allocated_bytes = 0;       // live blocks (rounded sizes)
  int64_t peak_allocated_bytes = 0;
  int64_t requested_bytes = 0;       // live requests as asked for (before rounding)
  int64_t reserved_bytes = 0;        // all segments held, live or cached
  int64_t peak_reserved_bytes = 0;
  int64_t segments = 0;
  int64_t allocations = 0;           // allocate() calls that returned memory
  int64_t cache_hits = 0;            // of those, served from a cached block (no new segment)
  int64_t segment_allocations = 0;   // backend allocate_segment successes
  int64_t segment_frees = 0;
  int64_t oom_retries = 0;           // times the cache was emptied to satisfy a request
  int64_t pending_frees = 0;         // freed blocks waiting for another stream's event
  int64_t cached_bytes() const { return reserved_bytes - allocated_bytes; }
};

struct BlockCacheOptions {
  size_t min_block = 512;
  size_t small_request = size_t{1} << 20;    // <= this comes from the small pool
  size_t small_segment = size_t{2} << 20;
  size_t large_segment = size_t{20} << 20;   // for large requests under min_large_alloc
  size_t min_large_alloc = size_t{10} << 20;
  size_t large_round = size_t{2} << 20;      // larger requests: their own segment, rounded to this
};

class BlockCache {
 public:
  // `name` appears in errors ("cuda:0 caching allocator"); `on_reserved_change(delta)` is told of
  // every segment acquired or released (the memory ledger's reserved row).
  BlockCache(CacheBackend& backend, std::string name, BlockCacheOptions options = {},
             std::function<void(int64_t)> on_reserved_change = {});
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // `bytes` (> 0) usable on `stream`; throws shardlab::Error naming the request and the cache's
  // state when even an emptied cache cannot provide it.
  void* allocate(size_t bytes, StreamId stream);
  // Returns a pointer from allocate(); an unknown pointer is an error.
  void free(void* ptr);
  // Marks ptr's block as used on `stream` too: its free then waits for that stream's work.
  void record_stream(void* ptr, StreamId stream);
  // Releases every cached segment that holds no live or pending block.
  void empty_cache();

  BlockCacheStats stats() const;
  void reset_peaks();
  // The rounded size a request of `bytes` occupies.
  size_t round_size(size_t bytes) const;
  // One line per segment: base offset order, block sizes, which are live (for debugging and tests).
  std::string describe() const;

 private:
  struct Block;
  struct BlockOrder {
    bool operator()(const Block* a, const Block* b) const;
  };
  using Pool = std::set<Block*, BlockOrder>;

  bool is_small(size_t rounded) const { return rounded <= options_.small_request; }
  size_t segment_size(size_t rounded) const;
  Pool& pool_for(const Block* b);
  Block* take_cached(size_t rounded, StreamId stream);
  Block* new_segment(size_t rounded, StreamId stream);
  void split(Block* block, size_t rounded);
  void release_to_pool(Block* block);
  void process_events();
  void release_free_segments();
  std::vector<Block*> segment_heads() const;

  CacheBackend& backend_;
  std::string name_;
  BlockCacheOptions options_;
  std::function<void(int64_t)> on_reserved_change_;
  mutable std::mutex mu_;
  Pool small_pool_, large_pool_;
  std::unordered_map<void*, Block*> live_;
  struct PendingFree {
    Block* block;
    std::vector<uint64_t> events;
  };
  std::vector<PendingFree> pending_;
  BlockCacheStats stats_;
};

// The block record itself (declared here so BlockOrder can compare; owned by BlockCache).
struct BlockCache::Block {
  StreamId stream = 0;
  size_t size = 0;
  size_t requested = 0;
  char* ptr = nullptr;
  bool small = false;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours within the same segment, by address
  Block* next = nullptr;
  std::set<StreamId> used_on;  // other streams recorded while allocated
};

}  // namespace shardlab::cuda

// BlockCache: best-fit reuse per stream, splitting and merging within segments, event-held frees
// and cache release (see NOTE [caching allocator design] in cuda/block_cache.h).
#include "cuda/block_cache.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace shardlab::cuda {

namespace {
std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

// Pools are ordered by (stream, size, address): lower_bound finds the smallest block of this
// stream that fits, and among equal sizes the lowest address (keeps reuse deterministic).
bool BlockCache::BlockOrder::operator()(const Block* a, const Block* b) const {
  if (a->stream != b->stream) return a->stream < b->stream;
  if (a->size != b->size) return a->size < b->size;
  return a->ptr < b->ptr;
}

BlockCache::BlockCache(CacheBackend& backend, std::string name, BlockCacheOptions options,
                       std::function<void(int64_t)> on_reserved_change)
    : backend_(backend), name_(std::move(name)), options_(options), on_reserved_change_(std::move(on_reserved_change)) {}

BlockCache::~BlockCache() {
  // Live blocks at exit belong to storages that outlive the cache (static tensors): their memory
  // is left to the driver's teardown. Wholly free segments are returned; every record is deleted.
  std::lock_guard lock(mu_);
  for (PendingFree& p : pending_)
    for (uint64_t e : p.events) backend_.destroy_event(e);
  const std::vector<Block*> heads = segment_heads();
  for (Block* head : heads)
    if (head->next == nullptr && !head->allocated && pool_for(head).count(head) != 0)
      backend_.free_segment(head->ptr, head->size);
  small_pool_.clear();
  large_pool_.clear();
  for (Block* head : heads) {
    for (Block* b = head; b != nullptr;) {
      Block* next = b->next;
      delete b;
      b = next;
    }
  }
}

// The first block of every segment, by address: free heads sit in the pools, live ones in live_,
// event-held ones in pending_.
std::vector<BlockCache::Block*> BlockCache::segment_heads() const {
  std::vector<Block*> heads;
  auto add_head = [&](Block* b) {
    if (b->prev == nullptr) heads.push_back(b);
  };
  for (const Pool* pool : {&small_pool_, &large_pool_})
    for (Block* b : *pool) add_head(b);
  for (const auto& [p, b] : live_) add_head(b);
  for (const PendingFree& p : pending_) add_head(p.block);
  std::sort(heads.begin(), heads.end(), [](const Block* a, const Block* b) { return a->ptr < b->ptr; });
  return heads;
}

BlockCache::Pool& BlockCache::pool_for(const Block* b) { return b->small ? small_pool_ : large_pool_; }

size_t BlockCache::round_size(size_t bytes) const {
  const size_t m = options_.min_block;
  return bytes < m ? m : (bytes + m - 1) / m * m;
}

size_t BlockCache::segment_size(size_t rounded) const {
  if (is_small(rounded)) return options_.small_segment;
  if (rounded < options_.min_large_alloc) return options_.large_segment;
  const size_t r = options_.large_round;
  return (rounded + r - 1) / r * r;
}

void* BlockCache::allocate(size_t bytes, StreamId stream) {
  SL_CHECK(bytes > 0, name_, ": allocate(0) (zero-byte storages hold no memory)");
  std::lock_guard lock(mu_);
  process_events();
  const size_t rounded = round_size(bytes);
  Block* block = take_cached(rounded, stream);
  if (block != nullptr) {
    ++stats_.cache_hits;
  } else {
    block = new_segment(rounded, stream);
    if (block == nullptr) {
      // Cached segments of other sizes or streams may be what stands in the way.
      ++stats_.oom_retries;
      release_free_segments();
      block = new_segment(rounded, stream);
    }
    if (block == nullptr) {
      SL_FAIL(name_, ": out of memory allocating ", bytes, " bytes (", mib(static_cast<int64_t>(rounded)),
              " rounded); the cache holds ", mib(stats_.reserved_bytes), " reserved, ", mib(stats_.allocated_bytes),
              " allocated by live tensors, ", mib(stats_.cached_bytes()), " cached but not releasable (partly used segments)");
    }
  }
  split(block, rounded);
  block->allocated = true;
  block->requested = bytes;
  live_[block->ptr] = block;
  ++stats_.allocations;
  stats_.allocated_bytes += static_cast<int64_t>(block->size);
  stats_.requested_bytes += static_cast<int64_t>(bytes);
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return block->ptr;
}

BlockCache::Block* BlockCache::take_cached(size_t rounded, StreamId stream) {
  Pool& pool = is_small(rounded) ? small_pool_ : large_pool_;
  Block key;
  key.stream = stream;
  key.size = rounded;
  key.ptr = nullptr;
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || (*it)->stream != stream) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

BlockCache::Block* BlockCache::new_segment(size_t rounded, StreamId stream) {
  const size_t size = segment_size(rounded);
  void* ptr = backend_.allocate_segment(size);
  if (ptr == nullptr) return nullptr;
  auto* block = new Block;
  block->stream = stream;
  block->size = size;
  block->ptr = static_cast<char*>(ptr);
  block->small = is_small(rounded);
  ++stats_.segments;
  ++stats_.segment_allocations;
  stats_.reserved_bytes += static_cast<int64_t>(size);
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  if (on_reserved_change_) on_reserved_change_(static_cast<int64_t>(size));
  return block;
}

// Cuts `block` down to `rounded` bytes when the rest is worth keeping as its own free block: any
// remainder in the small pool, more than a small request's worth in the large pool (so large
// segments are not shredded into slivers that only small requests could use, and they never do).
void BlockCache::split(Block* block, size_t rounded) {
  const size_t rest = block->size - rounded;
  const bool worth = block->small ? rest >= options_.min_block : rest > options_.small_request;
  if (!worth) return;
  auto* tail = new Block;
  tail->stream = block->stream;
  tail->size = rest;
  tail->ptr = block->ptr + rounded;
  tail->small = block->small;
  tail->prev = block;
  tail->next = block->next;
  if (block->next != nullptr) block->next->prev = tail;
  block->next = tail;
  block->size = rounded;
  pool_for(tail).insert(tail);
}

void BlockCache::free(void* ptr) {
  std::lock_guard lock(mu_);
  auto it = live_.find(ptr);
  SL_CHECK(it != live_.end(), name_, ": free of a pointer it did not allocate (or freed twice)");
  Block* block = it->second;
  live_.erase(it);
  block->allocated = false;
  stats_.allocated_bytes -= static_cast<int64_t>(block->size);
  stats_.requested_bytes -= static_cast<int64_t>(block->requested);
  block->requested = 0;
  if (!block->used_on.empty()) {
    PendingFree pending{block, {}};
    for (StreamId s : block->used_on) pending.events.push_back(backend_.record_event(s));
    block->used_on.clear();
    pending_.push_back(std::move(pending));
    ++stats_.pending_frees;
    return;
  }
  release_to_pool(block);
}

void BlockCache::record_stream(void* ptr, StreamId stream) {
  std::lock_guard lock(mu_);
  auto it = live_.find(ptr);
  SL_CHECK(it != live_.end(), name_, ": record_stream on a pointer it did not allocate");
  if (stream != it->second->stream) it->second->used_on.insert(stream);
}

// Merges the block with free neighbours of its segment (a neighbour is mergeable when it is in
// the pool: neither live nor waiting on an event) and puts the result in its pool.
void BlockCache::release_to_pool(Block* block) {
  Pool& pool = pool_for(block);
  auto mergeable = [&](Block* n) { return n != nullptr && !n->allocated && pool.count(n) != 0; };
  if (mergeable(block->prev)) {
    Block* p = block->prev;
    pool.erase(p);
    p->size += block->size;
    p->next = block->next;
    if (block->next != nullptr) block->next->prev = p;
    delete block;
    block = p;
  }
  if (mergeable(block->next)) {
    Block* n = block->next;
    pool.erase(n);
    block->size += n->size;
    block->next = n->next;
    if (n->next != nullptr) n->next->prev = block;
    delete n;
  }
  pool.insert(block);
}

void BlockCache::process_events() {
  auto done = [&](PendingFree& p) {
    for (uint64_t e : p.events)
      if (!backend_.event_completed(e)) return false;
    for (uint64_t e : p.events) backend_.destroy_event(e);
    release_to_pool(p.block);
    --stats_.pending_frees;
    return true;
  };
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(), done), pending_.end());
}

// A segment is releasable when one free block spans it whole (no neighbours).
void BlockCache::release_free_segments() {
  for (Pool* pool : {&small_pool_, &large_pool_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* b = *it;
      if (b->prev != nullptr || b->next != nullptr) {
        ++it;
        continue;
      }
      it = pool->erase(it);
      backend_.free_segment(b->ptr, b->size);
      --stats_.segments;
      ++stats_.segment_frees;
      stats_.reserved_bytes -= static_cast<int64_t>(b->size);
      if (on_reserved_change_) on_reserved_change_(-static_cast<int64_t>(b->size));
      delete b;
    }
  }
}

void BlockCache::empty_cache() {
  std::lock_guard lock(mu_);
  process_events();
  release_free_segments();
}

BlockCacheStats BlockCache::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void BlockCache::reset_peaks() {
  std::lock_guard lock(mu_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

std::string BlockCache::describe() const {
  std::lock_guard lock(mu_);
  std::ostringstream os;
  for (const Block* h : segment_heads()) {
    os << (h->small ? "small" : "large") << " segment stream " << h->stream << ":";
    for (const Block* b = h; b != nullptr; b = b->next) os << " " << b->size << (b->allocated ? "*" : "");
    os << "\n";
  }
  return os.str();
}

}  // namespace shardlab::cuda

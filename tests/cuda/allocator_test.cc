// The CUDA caching allocator, pinned host memory, events and async copies on a real GPU (each
// test skips without one); the bookkeeping itself is tested on the CPU in block_cache_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/memory_ledger.h"
#include "core/ops/views.h"
#include "cuda/caching_allocator.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "cuda/transfer.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab::cuda {
namespace {

using ::testing::HasSubstr;

TEST(CudaAllocator, ReusesAFreedBlockAndCountsTheLedgerPerTag) {
  SL_SKIP_WITHOUT_CUDA();
  MemoryLedger& ledger = MemoryLedger::instance();
  const DeviceMemory before = ledger.snapshot(Device::cuda(0));
  void* first = nullptr;
  {
    MemTagScope scope(MemTag::activation);
    Tensor a = Tensor::empty({1 << 20}, DType::f32, Device::cuda(0));  // 4 MiB: a 20 MiB segment
    first = a.raw_data();
    const DeviceMemory during = ledger.snapshot(Device::cuda(0));
    EXPECT_EQ(during[MemTag::activation].live - before[MemTag::activation].live, 4 << 20);
    EXPECT_GE(during.reserved - before.reserved, 0);
    EXPECT_GE(during.reserved, during.live) << "the device cache holds at least what live tensors use";
  }
  const BlockCacheStats after_free = caching_allocator_stats(0);
  Tensor b = Tensor::empty({1 << 20}, DType::f32, Device::cuda(0));
  EXPECT_EQ(b.raw_data(), first) << "same size, same stream: the cached block comes back";
  EXPECT_EQ(caching_allocator_stats(0).segment_allocations, after_free.segment_allocations);
  EXPECT_THAT(caching_allocator_summary(0), HasSubstr("cuda:0 caching allocator: allocated"));
}

TEST(CudaAllocator, EmptyCacheReturnsUnusedSegmentsToTheDriver) {
  SL_SKIP_WITHOUT_CUDA();
  { Tensor big = Tensor::empty({64 << 20}, DType::u8, Device::cuda(0)); }
  EXPECT_GE(caching_allocator_stats(0).cached_bytes(), int64_t(64) << 20);
  empty_cache();
  const BlockCacheStats s = caching_allocator_stats(0);
  EXPECT_LT(s.cached_bytes(), int64_t(64) << 20);
  EXPECT_EQ(MemoryLedger::instance().snapshot(Device::cuda(0)).reserved, s.reserved_bytes)
      << "the ledger's reserved row follows the cache";
}

TEST(CudaAllocator, OutOfMemoryNamesTheRequestAndTheCache) {
  SL_SKIP_WITHOUT_CUDA();
  try {
    Tensor huge = Tensor::empty({int64_t(1) << 50}, DType::u8, Device::cuda(0));  // 1 PiB
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cuda:0 caching allocator: out of memory allocating 1125899906842624 bytes"));
  }
}

TEST(CudaAllocator, PinnedTensorsComeFromTheCachingHostAllocator) {
  SL_SKIP_WITHOUT_CUDA();
  Tensor p = empty_pinned({1000}, DType::f32);
  EXPECT_TRUE(p.device().is_cpu());
  EXPECT_TRUE(is_pinned(p));
  EXPECT_FALSE(is_pinned(Tensor::empty({1000}, DType::f32)));
  cudaPointerAttributes attr{};
  SL_CUDA_CHECK(cudaPointerGetAttributes(&attr, p.raw_data()));
  EXPECT_EQ(attr.type, cudaMemoryTypeHost) << "page-locked host memory registered with CUDA";
  EXPECT_GT(pinned_allocator_stats().allocated_bytes, 0);
}

TEST(CudaTransfer, AsyncRoundTripKeepsEveryValue) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::i64}) {
    const Tensor host = dt == DType::i64 ? Tensor::arange(100003, DType::i64) : Tensor::randn({317, 129}, 5, dt);
    AsyncCopy up = copy_to_device_async(host, 0);  // pageable source: staged through pinned memory
    up.wait_on_compute(0);
    AsyncCopy down = copy_to_host_async(up.tensor);
    down.synchronize();
    EXPECT_TRUE(is_pinned(down.tensor));
    EXPECT_EQ(down.tensor.to_double_vector(), host.to_double_vector()) << dtype_name(dt);
  }
}

TEST(CudaTransfer, StridedSourcesArriveContiguous) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor host = Tensor::randn({64, 48}, 9);
  const Tensor t = ops::transpose(host, 0, 1);
  AsyncCopy up = copy_to_device_async(t, 0);
  up.synchronize();
  EXPECT_TRUE(up.tensor.is_contiguous());
  EXPECT_EQ(up.tensor.to_double_vector(), t.to_double_vector());
  AsyncCopy down = copy_to_host_async(ops::transpose(up.tensor, 0, 1));
  down.synchronize();
  EXPECT_EQ(down.tensor.to_double_vector(), host.to_double_vector());
}

TEST(CudaStream, EventsOrderStreamsAndTime) {
  SL_SKIP_WITHOUT_CUDA();
  EXPECT_NE(compute_stream(0), copy_stream(0));
  EXPECT_NE(copy_stream(0), comm_stream(0));
  Event start(true), stop(true);
  start.record(compute_stream(0));
  Tensor x = Tensor::empty({1 << 22}, DType::f32, Device::cuda(0));
  fill(static_cast<float*>(x.raw_data()), x.numel(), 1.0f);
  stop.record(compute_stream(0));
  stop.synchronize();
  EXPECT_TRUE(stop.query());
  EXPECT_GE(stop.elapsed_ms_since(start), 0.0f);
}

}  // namespace
}  // namespace shardlab::cuda

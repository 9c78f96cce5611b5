// The memory ledger counts every storage under its tag, follows retagging and frees, and keeps
// peaks until they are reset.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "core/storage.h"
#include "core/ops.h"

namespace shardlab {
namespace {

const TagBytes& cpu_tag(const DeviceMemory& m, MemTag tag) { return m[tag]; }

TEST(MemoryLedger, CountsAllocationsUnderTheScopedTagAndFreesThem) {
  MemoryLedger& ledger = MemoryLedger::instance();
  const DeviceMemory before = ledger.snapshot(Device::cpu());
  {
    MemTagScope scope(MemTag::optimizer_state);
    Tensor a = Tensor::empty({1000}, DType::f32);  // 4000 bytes
    Tensor b = Tensor::empty({10}, DType::bf16);   // 20 bytes
    DeviceMemory during = ledger.snapshot(Device::cpu());
    EXPECT_EQ(cpu_tag(during, MemTag::optimizer_state).live - cpu_tag(before, MemTag::optimizer_state).live, 4020);
    EXPECT_EQ(during.live - before.live, 4020);
    // A view allocates nothing.
    Tensor v = ops::transpose(ops::view(a, {10, 100}), 0, 1);
    EXPECT_EQ(ledger.snapshot(Device::cpu()).live, during.live);
  }
  DeviceMemory after = ledger.snapshot(Device::cpu());
  EXPECT_EQ(after.live, before.live);
  EXPECT_EQ(cpu_tag(after, MemTag::optimizer_state).live, cpu_tag(before, MemTag::optimizer_state).live);
}

TEST(MemoryLedger, ScopesNestAndRestore) {
  EXPECT_EQ(MemTagScope::current(), MemTag::other);
  {
    MemTagScope outer(MemTag::activation);
    {
      MemTagScope inner(MemTag::workspace);
      EXPECT_EQ(MemTagScope::current(), MemTag::workspace);
    }
    EXPECT_EQ(MemTagScope::current(), MemTag::activation);
  }
  EXPECT_EQ(MemTagScope::current(), MemTag::other);
}

TEST(MemoryLedger, RetagMovesBytesBetweenRows) {
  MemoryLedger& ledger = MemoryLedger::instance();
  const DeviceMemory before = ledger.snapshot(Device::cpu());
  Tensor w = Tensor::empty({256}, DType::f32);  // tagged `other`
  w.retag(MemTag::parameter);
  DeviceMemory m = ledger.snapshot(Device::cpu());
  EXPECT_EQ(m[MemTag::parameter].live - before[MemTag::parameter].live, 1024);
  EXPECT_EQ(m[MemTag::other].live, before[MemTag::other].live);
  EXPECT_EQ(w.tag(), MemTag::parameter);
}

// FSDP's in-place release: the storage object (and every view of it) survives, its bytes leave the
// allocator and the ledger, and come back on acquire_bytes(); a retag while released moves no bytes;
// the destructor of a released storage frees nothing twice (ASan would report it).
TEST(MemoryLedger, StorageReleasedInPlaceLeavesTheLedgerAndComesBack) {
  MemoryLedger& ledger = MemoryLedger::instance();
  const DeviceMemory before = ledger.snapshot(Device::cpu());
  {
    MemTagScope scope(MemTag::communication);
    Tensor t = Tensor::empty({64}, DType::f32);  // 256 bytes
    Tensor view = ops::narrow(t, 0, 16, 16);
    const std::shared_ptr<Storage> storage = t.storage();
    storage->release_bytes();
    EXPECT_FALSE(storage->holds_bytes());
    EXPECT_EQ(storage->data(), nullptr);
    EXPECT_EQ(ledger.snapshot(Device::cpu()).live, before.live);
    storage->release_bytes();  // idempotent
    storage->retag(MemTag::parameter);  // nothing to move while released
    EXPECT_EQ(ledger.snapshot(Device::cpu())[MemTag::parameter].live, before[MemTag::parameter].live);
    storage->acquire_bytes();
    ASSERT_TRUE(storage->holds_bytes());
    const DeviceMemory back = ledger.snapshot(Device::cpu());
    EXPECT_EQ(back[MemTag::parameter].live - before[MemTag::parameter].live, 256);  // under its new tag
    EXPECT_EQ(back[MemTag::communication].live, before[MemTag::communication].live);
    ops::fill_(t, 3.0);  // the old views reach the new bytes
    EXPECT_EQ(view.to_double_vector(), std::vector<double>(16, 3.0));
    storage->release_bytes();  // destroyed released
  }
  EXPECT_EQ(ledger.snapshot(Device::cpu()).live, before.live);
}

// A wrapped storage can be pointed at other memory (what aliases an in-place-released buffer);
// an owned one cannot, and an owned one cannot be released twice into wrapped memory.
TEST(MemoryLedger, OnlyWrappedStorageRebindsAndOnlyOwnedStorageReleases) {
  float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
  Storage wrapped(a, sizeof(a), Device::cpu(), nullptr);
  wrapped.rebind(b);
  EXPECT_EQ(wrapped.data(), b);
  EXPECT_THROW(wrapped.release_bytes(), Error);
  EXPECT_THROW(wrapped.acquire_bytes(), Error);
  Tensor owned = Tensor::empty({4}, DType::f32);
  EXPECT_THROW(owned.storage()->rebind(a), Error);
}

TEST(MemoryLedger, PeaksPersistUntilReset) {
  MemoryLedger& ledger = MemoryLedger::instance();
  ledger.reset_peaks();
  const int64_t base = ledger.snapshot(Device::cpu()).live;
  {
    MemTagScope scope(MemTag::activation);
    Tensor big = Tensor::empty({1 << 20}, DType::f32);  // 4 MiB
  }
  DeviceMemory m = ledger.snapshot(Device::cpu());
  EXPECT_EQ(m.live, base);
  EXPECT_GE(m.peak - base, 4 << 20);
  EXPECT_GE(m[MemTag::activation].peak, 4 << 20);
  ledger.reset_peaks();
  EXPECT_EQ(ledger.snapshot(Device::cpu()).peak, base);
  EXPECT_NE(ledger.table().find("cpu"), std::string::npos);
}

// A caching allocator reports what it holds from the device beside the per-tag rows; the table
// prints it as a "reserved" row, and reset_peaks restarts its peak too. (Device 7: no other test
// touches it, so the numbers are this test's alone.)
TEST(MemoryLedger, ReservedBytesOfACachingAllocatorHaveTheirOwnRow) {
  MemoryLedger& ledger = MemoryLedger::instance();
  const Device dev = Device::cuda(7);
  ledger.on_reserve(dev, 20 << 20);
  ledger.on_reserve(dev, 2 << 20);
  ledger.on_reserve(dev, -(20 << 20));
  DeviceMemory m = ledger.snapshot(dev);
  EXPECT_EQ(m.reserved, 2 << 20);
  EXPECT_EQ(m.reserved_peak, 22 << 20);
  EXPECT_EQ(m.live, 0);
  EXPECT_NE(ledger.table().find("cuda:7    reserved              2.000      22.000"), std::string::npos) << ledger.table();
  ledger.reset_peaks();
  EXPECT_EQ(ledger.snapshot(dev).reserved_peak, 2 << 20);
  ledger.on_reserve(dev, -(2 << 20));
  EXPECT_EQ(ledger.snapshot(dev).reserved, 0);
}

}  // namespace
}  // namespace shardlab

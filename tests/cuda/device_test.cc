// CUDA runtime basics: device discovery, the fill kernel round trip and SL_CUDA_CHECK's message.
// Tests that need a GPU skip (not fail) on machines without one, so CPU-only CI stays green.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "cuda/device.h"

namespace shardlab::cuda {
namespace {

using ::testing::HasSubstr;

#define SKIP_WITHOUT_GPU()                                                                  \
  do {                                                                                      \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device visible (no GPU or no driver)"; \
  } while (0)

TEST(CudaDevice, CountNeverThrows) {
  int count = -1;
  EXPECT_NO_THROW(count = device_count());
  EXPECT_GE(count, 0);
}

TEST(CudaDevice, BadIndexNamesTheIndex) {
  const int count = device_count();
  try {
    device_name(count);  // one past the last device (0 on a CPU-only machine)
    FAIL() << "device_name(" << count << ") did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cuda device index " + std::to_string(count) + " out of range"));
  }
}

TEST(CudaDevice, CheckMacroNamesErrorCallAndSite) {
  try {
    SL_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "SL_CUDA_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cudaErrorInvalidValue"));
    EXPECT_THAT(e.what(), HasSubstr("in cudaErrorInvalidValue at"));
    EXPECT_THAT(e.what(), HasSubstr("device_test.cc:"));
  }
}

TEST(CudaDevice, NamesEveryDevice) {
  SKIP_WITHOUT_GPU();
  for (int i = 0; i < device_count(); ++i) {
    const std::string name = device_name(i);
    EXPECT_THAT(name, HasSubstr("(sm_")) << name;
    EXPECT_GT(compute_capability(i), 0);
  }
}

TEST(CudaDevice, FillRoundTrip) {
  SKIP_WITHOUT_GPU();
  // More elements than one grid covers (4096 blocks x 256 threads) so the grid-stride loop is used.
  const int64_t n = 4096 * 256 + 37;
  const std::vector<float> host = fill_roundtrip(0, n, 2.5f);
  ASSERT_EQ(static_cast<int64_t>(host.size()), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(host[i], 2.5f) << "element " << i;
  EXPECT_TRUE(fill_roundtrip(0, 0, 1.0f).empty());
}

}  // namespace
}  // namespace shardlab::cuda

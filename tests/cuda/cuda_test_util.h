// Shared helpers of the CUDA op tests: skip without a GPU, move tensors to the GPU, and compare a
// CUDA result with the CPU backend's result for the same inputs within tests/tolerances.h.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/tensor.h"
#include "cuda/backend.h"
#include "tests/compare.h"
#include "tests/tolerances.h"

namespace shardlab::testing {

// Skips the test (not a failure) on machines without a visible GPU, so CPU-only CI stays green.
#define SL_SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                            \
    if (!::shardlab::cuda::initialize())                                                          \
      GTEST_SKIP() << "no CUDA device visible (no GPU or no driver): CUDA op test skipped";       \
  } while (0)

inline Tensor on_cuda(const Tensor& t) { return t.to(Device::cuda(0)); }

// got (on the GPU) has want's (CPU) shape and dtype and every value within tolerance(family, dtype).
inline void expect_matches_cpu(const Tensor& got, const Tensor& want, std::string_view family, const std::string& what) {
  ASSERT_TRUE(got.device().is_cuda()) << what << ": result is on " << got.device().str() << ", not the GPU";
  ASSERT_EQ(shape_str(got.shape()), shape_str(want.shape())) << what;
  ASSERT_EQ(std::string(dtype_name(got.dtype())), std::string(dtype_name(want.dtype()))) << what;
  expect_all_close(got.to_double_vector(), want.to_double_vector(), tolerance(family, want.dtype()), what);
}

// As expect_matches_cpu with an explicit tolerance (integer results, or a stated looser bound).
inline void expect_matches_cpu(const Tensor& got, const Tensor& want, Tolerance tol, const std::string& what) {
  ASSERT_TRUE(got.device().is_cuda()) << what << ": result is on " << got.device().str() << ", not the GPU";
  ASSERT_EQ(shape_str(got.shape()), shape_str(want.shape())) << what;
  ASSERT_EQ(std::string(dtype_name(got.dtype())), std::string(dtype_name(want.dtype()))) << what;
  expect_all_close(got.to_double_vector(), want.to_double_vector(), tol, what);
}

// The message of the shardlab::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace shardlab::testing

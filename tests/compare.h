// Element-wise comparison helpers shared by the kernel tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/tolerances.h"

namespace shardlab::testing {

// Every element within tol (|got - want| <= atol + rtol |want|); reports the first five misses.
inline void expect_all_close(const std::vector<double>& got, const std::vector<double>& want, Tolerance tol,
                             const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    if (!(err <= tol.atol + tol.rtol * std::abs(want[i])) && bad++ < 5)
      ADD_FAILURE() << what << " element " << i << ": got " << got[i] << ", want " << want[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

}  // namespace shardlab::testing

// Shared by the multi-rank tests: the world group of this mpirun job (created once per process) and
// independent references for reductions, computed in f64 from the values each rank contributes.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "distributed/comm_ledger.h"
#include "distributed/init.h"

namespace shardlab::dist::testing {

inline ProcessGroup& world() {
  static std::shared_ptr<ProcessGroup> group = [] {
    auto g = init_process_group();
    EXPECT_EQ(g->backend_name(), "mpi") << "run this binary under mpirun";
    return g;
  }();
  return *group;
}

// `values` rounded to `dtype` the way a tensor of that dtype stores them, back as f64.
inline std::vector<double> stored(const std::vector<double>& values, DType dtype) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, dtype).to_double_vector();
}

// What a reduction over `ranks` ranks must give at each of `numel` positions when rank r holds
// value(r, j) (stored in `dtype`) at position j: the exact sum of the stored inputs, divided by the
// rank count for avg (truncated for integers), stored in `dtype` once.
inline std::vector<double> expected_reduction(DType dtype, ReduceOp op, int ranks, int64_t numel,
                                              const std::function<double(int, int64_t)>& value) {
  std::vector<double> sums(numel, 0.0);
  for (int r = 0; r < ranks; ++r) {
    std::vector<double> contribution(numel);
    for (int64_t j = 0; j < numel; ++j) contribution[j] = value(r, j);
    contribution = stored(contribution, dtype);
    for (int64_t j = 0; j < numel; ++j) sums[j] += contribution[j];
  }
  if (op == ReduceOp::avg)
    for (double& s : sums) s = is_floating(dtype) ? s / ranks : std::trunc(s / ranks);
  return stored(sums, dtype);
}

inline Tensor filled(int64_t numel, DType dtype, const std::function<double(int64_t)>& value) {
  std::vector<double> v(numel);
  for (int64_t j = 0; j < numel; ++j) v[j] = value(j);
  return Tensor::from_vector(v, {numel}, dtype);
}

}  // namespace shardlab::dist::testing

// The CPU loop driver for element-wise work over several strided operands of one logical shape
// (broadcast operands carry stride 0). Adjacent dims that are contiguous for every operand are
// merged, so contiguous tensors become one flat loop; rows are split across OpenMP threads.
#pragma once

#include <omp.h>

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace shardlab::cpu {

// Below this many elements a loop runs on one thread (thread start-up would dominate).
inline constexpr int64_t kParallelGrain = 32768;

// Calls row(offsets, inner_strides, n) for runs of n elements: element k of the run is at
// offsets[i] + k * inner_strides[i] for operand i (offsets and strides in elements).
template <size_t N, typename Row>
void strided_loop(const Shape& shape, const std::array<Shape, N>& strides, const std::array<int64_t, N>& bases,
                  Row&& row) {
  // Merge dims (d, d+1) when every operand steps over d+1 exactly as one step of d.
  Shape dims;
  std::array<Shape, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !dims.empty();
    for (size_t i = 0; i < N && merge; ++i) merge = st[i].back() == strides[i][d] * shape[d];
    if (merge) {
      dims.back() *= shape[d];
      for (size_t i = 0; i < N; ++i) st[i].back() = strides[i][d];
    } else {
      dims.push_back(shape[d]);
      for (size_t i = 0; i < N; ++i) st[i].push_back(strides[i][d]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (size_t i = 0; i < N; ++i) st[i].push_back(0);
  }
  for (int64_t s : dims)
    if (s == 0) return;
  const int64_t nd = static_cast<int64_t>(dims.size());
  const int64_t inner = dims[nd - 1];
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) rows *= dims[d];
  std::array<int64_t, N> inner_strides;
  for (size_t i = 0; i < N; ++i) inner_strides[i] = st[i][nd - 1];

  auto run_rows = [&](int64_t begin, int64_t end, int64_t chunk) {
    // One flat row split into chunks when there are no outer dims (keeps threads busy).
    for (int64_t r = begin; r < end; ++r) {
      if (rows == 1) {
        int64_t start = r * chunk, n = std::min(chunk, inner - start);
        std::array<int64_t, N> off;
        for (size_t i = 0; i < N; ++i) off[i] = bases[i] + start * inner_strides[i];
        row(off, inner_strides, n);
        continue;
      }
      std::array<int64_t, N> off = bases;
      int64_t rem = r;
      for (int64_t d = nd - 2; d >= 0; --d) {
        int64_t idx = rem % dims[d];
        rem /= dims[d];
        for (size_t i = 0; i < N; ++i) off[i] += idx * st[i][d];
      }
      row(off, inner_strides, inner);
    }
  };

  const int64_t total = rows * inner;
  int64_t chunk = inner, tasks = rows;
  if (rows == 1) {
    chunk = std::max<int64_t>(4096, (inner + 63) / 64);
    tasks = (inner + chunk - 1) / chunk;
  }
  if (total < kParallelGrain || tasks == 1 || omp_in_parallel()) {
    run_rows(0, tasks, chunk);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tasks; ++t) run_rows(t, t + 1, chunk);
}

// Strides of `t` as seen through broadcasting to `shape` (0 for broadcast dims).
inline Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape out(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d) out[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return out;
}

}  // namespace shardlab::cpu

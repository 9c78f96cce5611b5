// Shared helpers for the CPU kernel benchmarks: a GFLOP/s counter and the Llama-layer GEMM shapes
// (TinyLlama-1.1B: hidden 2048, intermediate 5632) that several benchmarks sweep.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>

namespace shardlab::bench {

// Reports work per iteration as a rate: Google Benchmark divides by the (real) time per iteration.
inline void set_gflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// One GEMM C (M, N) = A (M, K) @ B (K, N); `weight_rows` means B is stored as an (N, K) weight
// and used through a transpose() view, the way a Linear layer computes x @ W^T.
struct GemmShape {
  const char* name;
  int64_t M, K, N;
  bool weight_rows;
};

inline constexpr GemmShape kGemmShapes[] = {
    {"square_1024", 1024, 1024, 1024, false},
    {"q_proj_512x2048x2048", 512, 2048, 2048, true},
    {"gate_up_512x2048x5632", 512, 2048, 5632, true},
    {"down_512x5632x2048", 512, 5632, 2048, true},
};

}  // namespace shardlab::bench

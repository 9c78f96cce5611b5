// CPU GEMM throughput of ops::matmul (f32, and bf16 widened to f32) on a square product and the
// Llama-layer projections, next to plain Eigen f32 GEMM on the same data and layout so that the
// framework's overhead (dispatch, strided maps, 16-bit conversion) shows directly.
#include <benchmark/benchmark.h>

// GCC 12 reports false -Wmaybe-uninitialized warnings inside Eigen's AVX-512 reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <string>

#include "autograd/functions.h"
#include "bench/bench_util.h"

namespace shardlab::bench {
namespace {

// Operands as a Linear layer holds them: activations (M, K) and either B (K, N) or W (N, K).
struct Operands {
  Tensor a, b_storage, b;  // b is b_storage or its transpose() view
};

Operands make_operands(const GemmShape& s, DType dtype) {
  Operands o;
  o.a = Tensor::randn({s.M, s.K}, 1, dtype);
  o.b_storage = s.weight_rows ? Tensor::randn({s.N, s.K}, 2, dtype) : Tensor::randn({s.K, s.N}, 2, dtype);
  o.b = s.weight_rows ? ops::transpose(o.b_storage, 0, 1) : o.b_storage;
  return o;
}

void bm_ops_matmul(benchmark::State& state, GemmShape s, DType dtype) {
  Operands o = make_operands(s, dtype);
  NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor c = matmul(o.a, o.b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_gflops(state, 2.0 * double(s.M) * double(s.N) * double(s.K));
}

// The baseline: one Eigen expression over the same f32 buffers, same storage orders.
void bm_eigen_f32(benchmark::State& state, GemmShape s) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Operands o = make_operands(s, DType::f32);
  Eigen::Map<const RowMat> A(o.a.data<float>(), s.M, s.K);
  Eigen::Map<const RowMat> B(o.b_storage.data<float>(), s.weight_rows ? s.N : s.K, s.weight_rows ? s.K : s.N);
  RowMat C(s.M, s.N);
  for (auto _ : state) {
    if (s.weight_rows) C.noalias() = A * B.transpose();
    else C.noalias() = A * B;
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, 2.0 * double(s.M) * double(s.N) * double(s.K));
}

// Registered in a loop so every shape gets the same three rows, side by side.
const bool registered = [] {
  for (const GemmShape& s : kGemmShapes) {
    const std::string shape = s.name;
    benchmark::RegisterBenchmark(("gemm/eigen_f32/" + shape).c_str(), bm_eigen_f32, s)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm/ops_matmul_f32/" + shape).c_str(), bm_ops_matmul, s, DType::f32)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm/ops_matmul_bf16/" + shape).c_str(), bm_ops_matmul, s, DType::bf16)
        ->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  return true;
}();

}  // namespace
}  // namespace shardlab::bench

// CPU throughput of the blockwise attention kernels (ops::attention_fwd / attention_bwd), f32,
// causal, grouped-query heads shaped like a small Llama layer (Hq = 8, Hkv = 2, D = 64).
//
// FLOP counting (multiply-add = 2 FLOPs), per (batch, q-head):
//   forward  = Q K^T (2*T*S*D) + P V (2*T*S*D) = 4*T*S*D, halved by the causal mask -> 4*B*Hq*T*T*D/2;
//   backward = five such GEMMs (recomputed Q K^T, dV = P^T dO, dP = dO V^T, dQ = dS K,
//              dK = dS^T Q) = 2.5x forward; forward+backward = 3.5x forward.
// Softmax exponentials and masking are not counted.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"
#include "core/ops.h"

namespace shardlab::bench {
namespace {

constexpr int64_t kB = 1, kHq = 8, kHkv = 2, kD = 64;

double causal_forward_flops(int64_t T) { return 4.0 * kB * kHq * double(T) * double(T) * kD / 2.0; }

struct Inputs {
  Tensor q, k, v, dout;
};

Inputs make_inputs(int64_t T) {
  return {Tensor::randn({kB, kHq, T, kD}, 1), Tensor::randn({kB, kHkv, T, kD}, 2),
          Tensor::randn({kB, kHkv, T, kD}, 3), Tensor::randn({kB, kHq, T, kD}, 4)};
}

void bm_attention_fwd(benchmark::State& state) {
  const int64_t T = state.range(0);
  Inputs in = make_inputs(T);
  for (auto _ : state) {
    ops::AttentionOut r = ops::attention_fwd(in.q, in.k, in.v, {});
    benchmark::DoNotOptimize(r.out.raw_data());
  }
  set_gflops(state, causal_forward_flops(T));
}

void bm_attention_fwd_bwd(benchmark::State& state) {
  const int64_t T = state.range(0);
  Inputs in = make_inputs(T);
  for (auto _ : state) {
    ops::AttentionOut r = ops::attention_fwd(in.q, in.k, in.v, {});
    ops::AttentionGrads g = ops::attention_bwd(in.dout, in.q, in.k, in.v, r.out, r.lse, {});
    benchmark::DoNotOptimize(g.dq.raw_data());
  }
  set_gflops(state, 3.5 * causal_forward_flops(T));
}

BENCHMARK(bm_attention_fwd)->Name("attention/fwd_f32_causal_B1_Hq8_Hkv2_D64/T")
    ->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_attention_fwd_bwd)->Name("attention/fwd_bwd_f32_causal_B1_Hq8_Hkv2_D64/T")
    ->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace shardlab::bench

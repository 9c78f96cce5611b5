// CUDA optimizer kernels (cuda/optimizer_kernels.cu, cuda/adamw_8bit.cu) against the CPU ones on
// identical state: AdamW and SGD in every float dtype over several steps, the multi-tensor AdamW
// against per-tensor CPU steps (directly and as the op ops::adamw_step_multi), 8-bit AdamW and
// blockwise (de)quantization, and argument errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"
#include "cuda/multi_tensor_adamw.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::expect_matches_cpu;
using testing::on_cuda;
using testing::tolerance;
using testing::Tolerance;

DType state_dtype(DType param) { return param == DType::f64 ? DType::f64 : DType::f32; }

// A parameter with its gradient and AdamW state, on the CPU and (copied) on the GPU.
struct AdamState {
  Tensor p, g, m, v;
};
AdamState make_state(int64_t n, DType dt, uint64_t seed) {
  return {Tensor::randn({n}, seed, dt), Tensor::randn({n}, seed + 1, dt),
          Tensor::randn({n}, seed + 2, state_dtype(dt), 0.0, 0.1), Tensor::rand({n}, seed + 3, state_dtype(dt), 0.0, 0.01)};
}
AdamState to_gpu(const AdamState& s) { return {on_cuda(s.p), on_cuda(s.g), on_cuda(s.m), on_cuda(s.v)}; }

void expect_state_matches(const AdamState& got, const AdamState& want, const std::string& what) {
  expect_matches_cpu(got.p, want.p, "optimizer", what + " param");
  expect_matches_cpu(got.m, want.m, "optimizer", what + " m");
  expect_matches_cpu(got.v, want.v, "optimizer", what + " v");
}

TEST(CudaOptimizer, AdamWMatchesCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    AdamState cpu = make_state(1031, dt, 1);
    AdamState gpu = to_gpu(cpu);
    ops::AdamWHyper h;
    h.lr = 1e-2;
    h.weight_decay = 0.1;
    for (int64_t step = 1; step <= 3; ++step) {
      h.step = step;
      ops::adamw_step(cpu.p, cpu.g, cpu.m, cpu.v, h);
      ops::adamw_step(gpu.p, gpu.g, gpu.m, gpu.v, h);
    }
    expect_state_matches(gpu, cpu, std::string("adamw ") + dtype_name(dt));
  }
}

TEST(CudaOptimizer, SgdMatchesCpuWithAndWithoutMomentum) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    for (bool nesterov : {false, true}) {
      const Tensor p_cpu = Tensor::randn({777}, 2, dt), g_cpu = Tensor::randn({777}, 3, dt);
      const Tensor buf_cpu = Tensor::zeros({777}, state_dtype(dt));
      const Tensor p = on_cuda(p_cpu), g = on_cuda(g_cpu), buf = on_cuda(buf_cpu);
      ops::SgdHyper h;
      h.lr = 0.05;
      h.momentum = 0.9;
      h.weight_decay = 0.01;
      h.nesterov = nesterov;
      for (int step = 0; step < 3; ++step) {
        h.first_step = step == 0;
        ops::sgd_step(p_cpu, g_cpu, buf_cpu, h);
        ops::sgd_step(p, g, buf, h);
      }
      const std::string what = std::string("sgd ") + dtype_name(dt) + (nesterov ? " nesterov" : "");
      expect_matches_cpu(p, p_cpu, "optimizer", what + " param");
      expect_matches_cpu(buf, buf_cpu, "optimizer", what + " momentum");
    }
    // Plain SGD: no buffer at all.
    const Tensor p_cpu = Tensor::randn({100}, 4, dt), g_cpu = Tensor::randn({100}, 5, dt);
    const Tensor p = on_cuda(p_cpu);
    ops::SgdHyper h;
    ops::sgd_step(p_cpu, g_cpu, Tensor(), h);
    ops::sgd_step(p, on_cuda(g_cpu), Tensor(), h);
    expect_matches_cpu(p, p_cpu, "optimizer", std::string("plain sgd ") + dtype_name(dt));
  }
}

TEST(CudaOptimizer, MultiTensorAdamWMatchesPerTensorCpuSteps) {
  SL_SKIP_WITHOUT_CUDA();
  // Sizes around the 65536-element chunk, an empty tensor, and two dtypes in one call.
  const std::vector<std::pair<int64_t, DType>> specs = {
      {1, DType::f32},         {1000, DType::f32},  {65536, DType::f32}, {65537, DType::bf16},
      {200003, DType::f32},    {0, DType::f32},     {4099, DType::bf16}, {3, DType::f16}};
  std::vector<AdamState> cpu, gpu;
  for (size_t i = 0; i < specs.size(); ++i) {
    cpu.push_back(make_state(specs[i].first, specs[i].second, 10 * i + 1));
    gpu.push_back(to_gpu(cpu.back()));
  }
  std::vector<Tensor> ps, gs, ms, vs;
  for (const AdamState& s : gpu) {
    ps.push_back(s.p);
    gs.push_back(s.g);
    ms.push_back(s.m);
    vs.push_back(s.v);
  }
  ops::AdamWHyper h;
  h.lr = 3e-3;
  h.weight_decay = 0.05;
  for (int64_t step = 1; step <= 2; ++step) {
    h.step = step;
    for (AdamState& s : cpu) ops::adamw_step(s.p, s.g, s.m, s.v, h);
    cuda::multi_tensor_adamw_step(ps, gs, ms, vs, h);
  }
  for (size_t i = 0; i < specs.size(); ++i)
    expect_state_matches(gpu[i], cpu[i], "multi-tensor #" + std::to_string(i) + " " + shape_str(cpu[i].p.shape()));
}

TEST(CudaOptimizer, MultiTensorAdamWChecksItsLists) {
  // The length check needs no GPU.
  try {
    cuda::multi_tensor_adamw_step({Tensor::zeros({2})}, {}, {}, {}, ops::AdamWHyper{});
    FAIL() << "unequal lists did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("multi_tensor_adamw_step"));
    EXPECT_THAT(e.what(), HasSubstr("equal lengths"));
  }
  SL_SKIP_WITHOUT_CUDA();
  const AdamState a = to_gpu(make_state(10, DType::f32, 1));
  const AdamState b = make_state(10, DType::f32, 2);  // left on the CPU
  try {
    cuda::multi_tensor_adamw_step({a.p, b.p}, {a.g, b.g}, {a.m, b.m}, {a.v, b.v}, ops::AdamWHyper{});
    FAIL() << "a CPU tensor did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("multi_tensor_adamw_step (tensor 1)"));
  }
}

TEST(CudaOptimizer, AdamWStepMultiOpMatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  // The op-table entry (what nn::AdamW calls): mixed dtypes and shapes, a chunk boundary, an empty
  // tensor, against the CPU op over the same lists.
  const std::vector<std::pair<Shape, DType>> specs = {{{3, 5}, DType::f32},   {{65537}, DType::f32},
                                                      {{17}, DType::bf16},    {{2, 3, 4}, DType::f16},
                                                      {{9}, DType::f64},      {{0}, DType::f32},
                                                      {{129, 513}, DType::bf16}};
  std::vector<AdamState> cpu, gpu;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Shape& shape = specs[i].first;
    const DType dt = specs[i].second;
    cpu.push_back({Tensor::randn(shape, 10 * i + 1, dt), Tensor::randn(shape, 10 * i + 2, dt),
                   Tensor::randn(shape, 10 * i + 3, state_dtype(dt), 0.0, 0.1),
                   Tensor::rand(shape, 10 * i + 4, state_dtype(dt), 0.0, 0.01)});
    gpu.push_back(to_gpu(cpu.back()));
  }
  auto lists = [](const std::vector<AdamState>& states) {
    std::vector<std::vector<Tensor>> l(4);
    for (const AdamState& s : states) {
      l[0].push_back(s.p);
      l[1].push_back(s.g);
      l[2].push_back(s.m);
      l[3].push_back(s.v);
    }
    return l;
  };
  const auto c = lists(cpu), g = lists(gpu);
  ops::AdamWHyper h;
  h.lr = 3e-3;
  h.weight_decay = 0.05;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    ops::adamw_step_multi(c[0], c[1], c[2], c[3], h);
    ops::adamw_step_multi(g[0], g[1], g[2], g[3], h);
  }
  for (size_t i = 0; i < specs.size(); ++i)
    expect_state_matches(gpu[i], cpu[i], "adamw_step_multi #" + std::to_string(i) + " " + dtype_name(specs[i].second) +
                                             " " + shape_str(specs[i].first));
  ops::adamw_step_multi({}, {}, {}, {}, h);  // an empty list is a no-op on the device too

  // Errors name the op and the bad entry; a CPU tensor in a CUDA list is rejected before any write.
  const Tensor p0 = gpu[0].p.to(Device::cpu());
  try {
    ops::adamw_step_multi({gpu[0].p, gpu[2].p}, {gpu[0].g, cpu[2].g}, {gpu[0].m, gpu[2].m}, {gpu[0].v, gpu[2].v}, h);
    FAIL() << "a CPU gradient in a CUDA list did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_step_multi (tensor 1)"));
  }
  expect_matches_cpu(gpu[0].p, p0, Tolerance{0.0, 0.0}, "param 0 after a failed call");
  try {
    ops::adamw_step_multi({gpu[0].p}, {}, {gpu[0].m}, {gpu[0].v}, h);
    FAIL() << "unequal lists did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_step_multi"));
    EXPECT_THAT(e.what(), HasSubstr("equal lengths"));
  }
}

TEST(CudaOptimizer, BlockwiseQuantizationIsExact) {
  SL_SKIP_WITHOUT_CUDA();
  for (bool is_signed : {true, false}) {
    const int64_t n = 3 * 256 + 77;  // a partial last block
    Tensor x = Tensor::randn({n}, 20, DType::f32, 0.0, 0.01);
    if (!is_signed) x = ops::mul(x, x);
    ops::fill_(ops::narrow(x, 0, 256, 256), 0.0);  // an all-zero block stores absmax 0
    const int64_t nb = ops::num_blocks_8bit(n);
    const Tensor codes_cpu = Tensor::empty({n}, DType::u8), absmax_cpu = Tensor::empty({nb}, DType::f32);
    ops::quantize_blockwise(x, codes_cpu, absmax_cpu, is_signed);
    const Tensor codes = on_cuda(Tensor::zeros({n}, DType::u8)), absmax = on_cuda(Tensor::zeros({nb}, DType::f32));
    ops::quantize_blockwise(on_cuda(x), codes, absmax, is_signed);
    const std::string what = is_signed ? "signed" : "unsigned";
    expect_matches_cpu(codes, codes_cpu, Tolerance{0.0, 0.0}, what + " codes");
    expect_matches_cpu(absmax, absmax_cpu, Tolerance{0.0, 0.0}, what + " absmax");

    const Tensor out_cpu = Tensor::empty({n}, DType::f32), out = on_cuda(Tensor::zeros({n}, DType::f32));
    ops::dequantize_blockwise(codes_cpu, absmax_cpu, out_cpu, is_signed);
    ops::dequantize_blockwise(on_cuda(codes_cpu), on_cuda(absmax_cpu), out, is_signed);
    expect_matches_cpu(out, out_cpu, Tolerance{0.0, 0.0}, what + " dequantized");
  }
}

// A block of NaNs stores absmax 0 on both backends (the CPU's max starts from 0 and skips NaN).
TEST(CudaOptimizer, AllNaNBlockStoresAbsmaxZeroAsOnTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  Tensor x = Tensor::randn({512}, 21, DType::f32, 0.0, 0.01);
  ops::fill_(ops::narrow(x, 0, 256, 256), std::numeric_limits<double>::quiet_NaN());
  const Tensor codes_cpu = Tensor::empty({512}, DType::u8), absmax_cpu = Tensor::empty({2}, DType::f32);
  ops::quantize_blockwise(x, codes_cpu, absmax_cpu, true);
  const Tensor codes = on_cuda(Tensor::zeros({512}, DType::u8)), absmax = on_cuda(Tensor::zeros({2}, DType::f32));
  ops::quantize_blockwise(on_cuda(x), codes, absmax, true);
  expect_matches_cpu(absmax, absmax_cpu, Tolerance{0.0, 0.0}, "absmax with a NaN block");
  expect_matches_cpu(ops::narrow(codes, 0, 0, 256), ops::narrow(codes_cpu, 0, 0, 256), Tolerance{0.0, 0.0},
                     "the finite block's codes");
}

// 8-bit state of a parameter, quantized on the CPU from small random moments.
struct State8 {
  Tensor p, g, mc, vc, am, av;
};
State8 make_state8(int64_t n, DType dt, uint64_t seed) {
  const int64_t nb = ops::num_blocks_8bit(n);
  State8 s{Tensor::randn({n}, seed, dt),         Tensor::randn({n}, seed + 1, dt),
           Tensor::empty({n}, DType::u8),        Tensor::empty({n}, DType::u8),
           Tensor::empty({nb}, DType::f32),      Tensor::empty({nb}, DType::f32)};
  ops::quantize_blockwise(Tensor::randn({n}, seed + 2, DType::f32, 0.0, 0.01), s.mc, s.am, true);
  ops::quantize_blockwise(Tensor::rand({n}, seed + 3, DType::f32, 0.0, 1e-4), s.vc, s.av, false);
  return s;
}
State8 to_gpu(const State8& s) {
  return {on_cuda(s.p), on_cuda(s.g), on_cuda(s.mc), on_cuda(s.vc), on_cuda(s.am), on_cuda(s.av)};
}

// Codes may differ where the two backends' f32 moments straddle the midpoint between two map
// entries (their FMA contractions differ by an ulp): allow 1% of codes one step apart, no more.
void expect_codes_close(const Tensor& got, const Tensor& want, const std::string& what) {
  const std::vector<int64_t> a = got.to_int_vector(), b = want.to_int_vector();
  ASSERT_EQ(a.size(), b.size()) << what;
  int64_t off = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LE(std::abs(a[i] - b[i]), 1) << what << " code " << i;
    off += a[i] != b[i];
  }
  EXPECT_LE(off * 100, static_cast<int64_t>(a.size())) << what << ": " << off << " codes differ";
}

TEST(CudaOptimizer, AdamW8bitMatchesCpuInEveryFloatDtype) {
  SL_SKIP_WITHOUT_CUDA();
  ops::AdamWHyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.01;
  h.step = 5;
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const State8 cpu = make_state8(5 * 256 + 3, dt, 30);
    const State8 gpu = to_gpu(cpu);
    ops::adamw_8bit_step(cpu.p, cpu.g, cpu.mc, cpu.vc, cpu.am, cpu.av, h);
    ops::adamw_8bit_step(gpu.p, gpu.g, gpu.mc, gpu.vc, gpu.am, gpu.av, h);
    const std::string what = std::string("8-bit ") + dtype_name(dt);
    expect_matches_cpu(gpu.p, cpu.p, "optimizer", what + " param");
    expect_matches_cpu(gpu.am, cpu.am, "optimizer", what + " m absmax");
    expect_matches_cpu(gpu.av, cpu.av, "optimizer", what + " v absmax");
    expect_codes_close(gpu.mc, cpu.mc, what + " m codes");
    expect_codes_close(gpu.vc, cpu.vc, what + " v codes");
  }
}

TEST(CudaOptimizer, AdamW8bitStaysCloseOverSteps) {
  SL_SKIP_WITHOUT_CUDA();
  const State8 cpu = make_state8(4 * 256, DType::f32, 40);
  const State8 gpu = to_gpu(cpu);
  ops::AdamWHyper h;
  h.lr = 1e-3;
  for (int64_t step = 1; step <= 4; ++step) {
    h.step = step;
    ops::adamw_8bit_step(cpu.p, cpu.g, cpu.mc, cpu.vc, cpu.am, cpu.av, h);
    ops::adamw_8bit_step(gpu.p, gpu.g, gpu.mc, gpu.vc, gpu.am, gpu.av, h);
  }
  // A code one step apart moves m by up to 1.4% of its block's absmax, and the parameter by lr
  // times that over sqrt(v): 1e-4 bounds what such flips can do over four steps.
  expect_matches_cpu(gpu.p, cpu.p, Tolerance{1e-4, 1e-4}, "4 steps param");
}

TEST(CudaOptimizer, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const AdamState s = to_gpu(make_state(8, DType::f32, 50));
  try {
    ops::adamw_step(s.p, s.g, s.m, Tensor::zeros({8}), ops::AdamWHyper{});  // v on the CPU
    FAIL() << "mixed devices did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_step"));
    EXPECT_THAT(e.what(), HasSubstr("device mismatch"));
  }
  try {
    ops::adamw_step(s.p, s.g, s.m, on_cuda(Tensor::zeros({8}, DType::bf16)), ops::AdamWHyper{});
    FAIL() << "a bf16 state did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_step"));
    EXPECT_THAT(e.what(), HasSubstr("must be f32"));
  }
  const State8 q = to_gpu(make_state8(300, DType::f32, 51));
  try {
    ops::adamw_8bit_step(q.p, q.g, q.mc, q.vc, q.am, on_cuda(Tensor::zeros({1})), ops::AdamWHyper{});
    FAIL() << "a short absmax did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("adamw_8bit_step"));
    EXPECT_THAT(e.what(), HasSubstr("(1,)"));
  }
}

}  // namespace
}  // namespace shardlab

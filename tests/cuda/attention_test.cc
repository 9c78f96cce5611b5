// CUDA attention (cuda/attention_kernels.cu and the flash_attention_* files) against the CPU
// kernel on the same inputs: both the tensor-core path (bf16/f16, head dim 64/128) and the general
// path (every dtype; forced with SHARDLAB_ATTENTION_KERNEL=general), causal and not, grouped-query
// heads, lengths that are not multiples of the tiles, T != S, segment ids, explicit scales,
// strided views, bit-identical backward runs and device errors. lse and dq/dk/dv are compared too;
// the GPU backward gets the CPU's out and lse so that it is checked on its own.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::on_cuda;
using testing::Tolerance;
using testing::tolerance;

// Sets SHARDLAB_ATTENTION_KERNEL for one scope ("general" forces the general path), then puts
// back whatever was there.
class KernelChoice {
 public:
  explicit KernelChoice(const char* value) {
    if (const char* old = std::getenv(kVar)) previous_ = old;
    ::setenv(kVar, value, 1);
  }
  ~KernelChoice() {
    if (previous_) ::setenv(kVar, previous_->c_str(), 1);
    else ::unsetenv(kVar);
  }
  KernelChoice(const KernelChoice&) = delete;
  KernelChoice& operator=(const KernelChoice&) = delete;

 private:
  static constexpr const char* kVar = "SHARDLAB_ATTENTION_KERNEL";
  std::optional<std::string> previous_;
};

// Element-wise within tol, where infinities (lse of rows without keys) must match exactly.
void expect_close(const Tensor& got, const Tensor& want, Tolerance tol, const std::string& what) {
  ASSERT_TRUE(got.device().is_cuda()) << what << ": result is on " << got.device().str();
  ASSERT_EQ(shape_str(got.shape()), shape_str(want.shape())) << what;
  ASSERT_EQ(std::string(dtype_name(got.dtype())), std::string(dtype_name(want.dtype()))) << what;
  const std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  int64_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool ok = std::isinf(w[i]) || std::isinf(g[i]) ? g[i] == w[i]
                                                          : std::abs(g[i] - w[i]) <= tol.atol + tol.rtol * std::abs(w[i]);
    if (!ok && bad++ < 5) ADD_FAILURE() << what << " element " << i << ": got " << g[i] << ", want " << w[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements out of tolerance";
}

struct Case {
  int64_t B, Hq, Hkv, T, S, D;
  bool causal = true;
  DType dtype = DType::f32;
  std::optional<double> scale;
  std::vector<int64_t> seg;  // (B, T) document ids, or empty
  DType seg_dtype = DType::i64;

  std::string name() const {
    std::string s = std::string(dtype_name(dtype)) + " B" + std::to_string(B) + " Hq" + std::to_string(Hq) + " Hkv" +
                    std::to_string(Hkv) + " T" + std::to_string(T) + " S" + std::to_string(S) + " D" +
                    std::to_string(D) + (causal ? " causal" : " full");
    if (scale) s += " scale " + std::to_string(*scale);
    if (!seg.empty()) s += std::string(" segments ") + dtype_name(seg_dtype);
    return s;
  }
};

struct Inputs {
  Tensor q, k, v, dout;
};

Inputs make_inputs(const Case& c, uint64_t seed) {
  return {Tensor::randn({c.B, c.Hq, c.T, c.D}, seed, c.dtype), Tensor::randn({c.B, c.Hkv, c.S, c.D}, seed + 1, c.dtype),
          Tensor::randn({c.B, c.Hkv, c.S, c.D}, seed + 2, c.dtype),
          Tensor::randn({c.B, c.Hq, c.T, c.D}, seed + 3, c.dtype)};
}

ops::AttentionOptions options_of(const Case& c) {
  ops::AttentionOptions opt;
  opt.causal = c.causal;
  opt.scale = c.scale;
  if (!c.seg.empty()) opt.segment_ids = Tensor::from_ints(c.seg, {c.B, c.T}, c.seg_dtype);
  return opt;
}

ops::AttentionOptions on_cuda(ops::AttentionOptions opt) {
  if (opt.segment_ids.defined()) opt.segment_ids = on_cuda(opt.segment_ids);
  return opt;
}

// Forward and backward of `c` on both backends. The GPU inputs are `view` of GPU copies of the
// CPU inputs (identity by default), so strided GPU layouts can be tested on the same values.
void expect_case_matches_cpu(const Case& c, uint64_t seed, Tensor (*view)(const Tensor&) = nullptr) {
  SCOPED_TRACE(c.name());
  const Inputs in = make_inputs(c, seed);
  const ops::AttentionOptions cpu_opt = options_of(c), gpu_opt = on_cuda(cpu_opt);
  auto gpu = [&](const Tensor& t) { return view != nullptr ? view(on_cuda(t)) : on_cuda(t); };
  const Tolerance tol = tolerance("attention", c.dtype);
  const Tolerance lse_tol = tolerance("attention", c.dtype == DType::f64 ? DType::f64 : DType::f32);

  const ops::AttentionOut want = ops::attention_fwd(in.q, in.k, in.v, cpu_opt);
  const ops::AttentionOut got = ops::attention_fwd(gpu(in.q), gpu(in.k), gpu(in.v), gpu_opt);
  expect_close(got.out, want.out, tol, "out");
  expect_close(got.lse, want.lse, lse_tol, "lse");

  const ops::AttentionGrads want_g = ops::attention_bwd(in.dout, in.q, in.k, in.v, want.out, want.lse, cpu_opt);
  const ops::AttentionGrads got_g = ops::attention_bwd(gpu(in.dout), gpu(in.q), gpu(in.k), gpu(in.v),
                                                       gpu(want.out), on_cuda(want.lse), gpu_opt);
  expect_close(got_g.dq, want_g.dq, tol, "dq");
  expect_close(got_g.dk, want_g.dk, tol, "dk");
  expect_close(got_g.dv, want_g.dv, tol, "dv");
}

// The same case through the path the dispatch picks and through the forced general path.
void expect_both_paths_match_cpu(const Case& c, uint64_t seed) {
  {
    SCOPED_TRACE("automatic path choice");
    expect_case_matches_cpu(c, seed);
  }
  KernelChoice general("general");
  SCOPED_TRACE("forced general path");
  expect_case_matches_cpu(c, seed);
}

// Documents of lengths cycling through `lengths` (the last one cut at T), different per batch row.
std::vector<int64_t> documents(int64_t B, int64_t T, const std::vector<int64_t>& lengths) {
  std::vector<int64_t> seg;
  for (int64_t b = 0; b < B; ++b) {
    int64_t id = 10 * b, left = lengths[static_cast<size_t>(b) % lengths.size()];
    for (int64_t t = 0; t < T; ++t) {
      if (left == 0) left = lengths[static_cast<size_t>(++id) % lengths.size()];
      seg.push_back(id);
      --left;
    }
  }
  return seg;
}

// ---- the general path: f32 (and f64) always take it ----

TEST(CudaAttention, F32MatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (bool causal : {true, false}) {
    expect_case_matches_cpu({2, 8, 2, 77, 77, 64, causal}, 1);   // GQA 8/2, T not a tile multiple
    expect_case_matches_cpu({1, 4, 4, 130, 130, 128, causal}, 2);  // MHA, D 128
    expect_case_matches_cpu({2, 6, 3, 77, 130, 40, causal}, 3);  // odd head dim, S > T
  }
}

TEST(CudaAttention, F64MatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  expect_case_matches_cpu({1, 4, 2, 70, 70, 24, true, DType::f64}, 4);
}

// ---- 16-bit inputs: the tensor-core path for D 64/128, and the general one ----

TEST(CudaAttention, Bf16BothPathsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (bool causal : {true, false}) {
    expect_both_paths_match_cpu({2, 8, 2, 130, 130, 64, causal, DType::bf16}, 10);   // GQA 8/2
    expect_both_paths_match_cpu({1, 4, 4, 77, 77, 128, causal, DType::bf16}, 11);    // MHA
    expect_both_paths_match_cpu({1, 8, 2, 77, 130, 128, causal, DType::bf16}, 12);   // S > T
  }
  expect_case_matches_cpu({1, 4, 2, 77, 77, 40, true, DType::bf16}, 13);  // D 40: general path
}

TEST(CudaAttention, F16MatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  expect_both_paths_match_cpu({1, 8, 2, 130, 130, 64, true, DType::f16}, 20);
}

// Many tiles per block: the cp.async double buffering runs for dozens of steps.
TEST(CudaAttention, Bf16LongSequence) {
  SL_SKIP_WITHOUT_CUDA();
  expect_case_matches_cpu({1, 8, 2, 1000, 1000, 128, true, DType::bf16}, 30);
  expect_case_matches_cpu({2, 4, 4, 520, 520, 64, false, DType::bf16}, 31);
}

// T > S under a causal mask: the first T - S queries see no key (out 0, lse -inf, no gradient).
TEST(CudaAttention, RowsWithoutKeys) {
  SL_SKIP_WITHOUT_CUDA();
  expect_case_matches_cpu({1, 4, 2, 130, 77, 64, true, DType::f32}, 40);
  expect_both_paths_match_cpu({1, 4, 2, 130, 77, 64, true, DType::bf16}, 41);
  expect_both_paths_match_cpu({1, 2, 1, 200, 7, 128, true, DType::bf16}, 42);
}

TEST(CudaAttention, ExplicitScale) {
  SL_SKIP_WITHOUT_CUDA();
  // A negative scale flips which keys dominate; masking must still win (-inf stays -inf). Scales
  // of 0.3 make the softmax ~2.4x sharper than 1/sqrt(64), still within the bf16 tolerance of the
  // tensor-core path, which rounds P and dS to bf16 before its products (as FlashAttention does).
  for (double scale : {0.3, -0.3}) {
    Case c{1, 4, 2, 130, 130, 64, true, DType::bf16};
    c.scale = scale;
    expect_both_paths_match_cpu(c, 50);
    c.dtype = DType::f32;
    expect_case_matches_cpu(c, 51);
  }
}

TEST(CudaAttention, SegmentIds) {
  SL_SKIP_WITHOUT_CUDA();
  for (bool causal : {true, false}) {
    Case c{2, 8, 2, 130, 130, 64, causal, DType::bf16};
    c.seg = documents(2, 130, {20, 45, 7, 64});
    expect_both_paths_match_cpu(c, 60);
    c.seg_dtype = DType::i32;
    c.D = 128;
    expect_both_paths_match_cpu(c, 61);
    c.dtype = DType::f32;
    c.D = 40;
    expect_case_matches_cpu(c, 62);
  }
  // Documents on 64-row boundaries: whole tiles inside one document skip the masking, whole
  // tiles across two documents are skipped.
  Case aligned{1, 4, 2, 256, 256, 64, true, DType::bf16};
  aligned.seg = documents(1, 256, {64, 128, 64});
  expect_both_paths_match_cpu(aligned, 63);
  aligned.causal = false;
  expect_both_paths_match_cpu(aligned, 64);
}

// (B, T, H, D) storage viewed as (B, H, T, D), as the model produces q/k/v: strided rows that the
// tensor-core path reads in place; a misaligned view and a non-unit head-dim stride take the
// general path or a contiguous copy.
Tensor bthd_view(const Tensor& t) {  // t (B, H, T, D) -> same values through a (B, T, H, D) buffer
  return ops::transpose(ops::contiguous(ops::transpose(t, 1, 2)), 1, 2);
}
Tensor misaligned_view(const Tensor& t) {  // rows 65 elements apart, starting one element in
  Tensor wide = Tensor::empty({t.size(0), t.size(1), t.size(2), t.size(3) + 1}, t.dtype(), t.device());
  Tensor view = ops::narrow(wide, 3, 1, t.size(3));
  ops::copy_(view, t);
  return view;
}
Tensor column_major_view(const Tensor& t) {  // head-dim stride T
  return ops::transpose(ops::contiguous(ops::transpose(t, 2, 3)), 2, 3);
}

TEST(CudaAttention, StridedInputs) {
  SL_SKIP_WITHOUT_CUDA();
  const Case c{2, 8, 2, 77, 77, 64, true, DType::bf16};
  {
    SCOPED_TRACE("(B, T, H, D) storage");
    expect_case_matches_cpu(c, 70, bthd_view);
    ASSERT_FALSE(bthd_view(on_cuda(Tensor::randn({1, 2, 3, 8}, 1))).is_contiguous());
  }
  {
    SCOPED_TRACE("misaligned rows");
    expect_case_matches_cpu(c, 71, misaligned_view);
  }
  {
    SCOPED_TRACE("head-dim stride != 1");
    expect_case_matches_cpu(c, 72, column_major_view);
    expect_case_matches_cpu({1, 2, 1, 33, 33, 24, false, DType::f32}, 73, column_major_view);
  }
}

// Two backward runs on the same inputs are bit-identical (no atomics): with one block per
// (key tile, kv-head) and with the q-heads of a group split over blocks (small batch).
TEST(CudaAttention, BackwardIsDeterministic) {
  SL_SKIP_WITHOUT_CUDA();
  const std::vector<Case> cases = {{1, 8, 2, 300, 300, 128, true, DType::bf16},  // few blocks: heads split
                                   {8, 4, 4, 300, 300, 64, true, DType::bf16},   // MHA: one block per tile
                                   {1, 8, 2, 130, 130, 40, true, DType::f32}};   // general path
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name());
    const Inputs in = make_inputs(c, 80);
    const Tensor q = on_cuda(in.q), k = on_cuda(in.k), v = on_cuda(in.v), dout = on_cuda(in.dout);
    const ops::AttentionOut f = ops::attention_fwd(q, k, v, {});
    const ops::AttentionGrads a = ops::attention_bwd(dout, q, k, v, f.out, f.lse, {});
    const ops::AttentionGrads b = ops::attention_bwd(dout, q, k, v, f.out, f.lse, {});
    EXPECT_EQ(a.dq.to_double_vector(), b.dq.to_double_vector());
    EXPECT_EQ(a.dk.to_double_vector(), b.dk.to_double_vector());
    EXPECT_EQ(a.dv.to_double_vector(), b.dv.to_double_vector());
    const ops::AttentionOut f2 = ops::attention_fwd(q, k, v, {});
    EXPECT_EQ(f.out.to_double_vector(), f2.out.to_double_vector());
  }
}

TEST(CudaAttention, EmptyQueries) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor q = on_cuda(Tensor::randn({1, 4, 0, 64}, 1, DType::bf16));
  const Tensor k = on_cuda(Tensor::randn({1, 2, 5, 64}, 2, DType::bf16));
  const ops::AttentionOut f = ops::attention_fwd(q, k, k, {});
  EXPECT_EQ(f.out.shape(), q.shape());
  EXPECT_EQ(f.lse.shape(), Shape({1, 4, 0}));
  const ops::AttentionGrads g = ops::attention_bwd(q, q, k, k, f.out, f.lse, {});
  for (double x : g.dk.to_double_vector()) EXPECT_EQ(x, 0.0);
  for (double x : g.dv.to_double_vector()) EXPECT_EQ(x, 0.0);
}

// ---- errors ----

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_THAT(std::string(e.what()), HasSubstr(p));
  }
}

TEST(CudaAttention, MixedDevicesAreAnError) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor q_cpu = Tensor::randn({1, 2, 8, 16}, 1), k_cpu = Tensor::randn({1, 2, 8, 16}, 2);
  const Tensor q = on_cuda(q_cpu), k = on_cuda(k_cpu);
  expect_error([&] { ops::attention_fwd(q, k_cpu, k_cpu, {}); }, {"attention_fwd", "cpu", "(1, 2, 8, 16)"});
  ops::AttentionOptions opt;
  opt.segment_ids = Tensor::zeros({1, 8}, DType::i64);  // on the CPU
  expect_error([&] { ops::attention_fwd(q, k, k, opt); }, {"attention_fwd", "cpu", "(1, 8)"});
  const ops::AttentionOut f = ops::attention_fwd(q, k, k, {});
  const ops::AttentionOut f_cpu = ops::attention_fwd(q_cpu, k_cpu, k_cpu, {});
  expect_error([&] { ops::attention_bwd(q, q, k, k, f.out, f_cpu.lse, {}); }, {"attention_bwd", "cpu"});
}

TEST(CudaAttention, BadArgumentsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor q = on_cuda(Tensor::randn({1, 3, 4, 8}, 1)), k = on_cuda(Tensor::randn({1, 2, 4, 8}, 2));
  expect_error([&] { ops::attention_fwd(q, k, k, {}); }, {"attention_fwd", "(1, 3, 4, 8)", "(1, 2, 4, 8)"});
  const Tensor q16 = on_cuda(Tensor::randn({1, 2, 4, 8}, 3, DType::bf16));
  expect_error([&] { ops::attention_fwd(q16, k, k, {}); }, {"attention_fwd", "bf16", "f32"});
  KernelChoice bad("fastest");
  const Tensor q2 = on_cuda(Tensor::randn({1, 2, 4, 8}, 4));
  expect_error([&] { ops::attention_fwd(q2, k, k, {}); }, {"SHARDLAB_ATTENTION_KERNEL", "fastest"});
}

}  // namespace
}  // namespace shardlab

// CUDA fused cross-entropy (forward and backward) against the CPU kernels: every reduction, every
// float dtype, a 32000-token vocabulary, ignore_index, i32 targets, strided and transposed logits,
// an all-ignored mean (NaN), bit-identical reruns, and errors that name the op and the target.
// Skips without a GPU (written where none was visible: compiled, not yet run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab {
namespace {

using testing::expect_matches_cpu;
using testing::on_cuda;
using testing::Tolerance;
using ::testing::HasSubstr;

constexpr int64_t kIgnore = -100;

// n targets in [0, v), every `ignore_every`-th one ignore_index.
Tensor make_targets(int64_t n, int64_t v, uint64_t seed, DType dtype, int64_t ignore_every = 5) {
  std::mt19937_64 gen(seed);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r)
    t[r] = r % ignore_every == ignore_every - 1 ? kIgnore : static_cast<int64_t>(gen() % static_cast<uint64_t>(v));
  return Tensor::from_ints(t, {n}, dtype);
}

const char* reduction_name(ops::Reduction r) {
  return r == ops::Reduction::mean ? "mean" : r == ops::Reduction::sum ? "sum" : "none";
}

// Forward (loss, lse, count) and backward (dlogits) of CUDA against CPU for one setting. `logits`
// and `logits_d` are the same values on the CPU and the GPU (possibly strided views).
void check_case(const Tensor& logits, const Tensor& logits_d, const Tensor& targets, ops::Reduction reduction,
                const std::string& what) {
  const ops::CrossEntropyOut want = ops::cross_entropy_fwd(logits, targets, kIgnore, reduction);
  const ops::CrossEntropyOut got = ops::cross_entropy_fwd(logits_d, on_cuda(targets), kIgnore, reduction);
  expect_matches_cpu(got.loss, want.loss, "cross_entropy", what + " loss");
  expect_matches_cpu(got.lse, want.lse, "cross_entropy", what + " lse");
  EXPECT_EQ(got.count, want.count) << what;

  const Tensor dloss = reduction == ops::Reduction::none
                           ? Tensor::randn({logits.size(0)}, 77, DType::f32)
                           : Tensor::scalar(1.7, DType::f32);
  const Tensor want_d = ops::cross_entropy_bwd(dloss, logits, targets, want.lse, kIgnore, reduction, want.count);
  const Tensor got_d =
      ops::cross_entropy_bwd(on_cuda(dloss), logits_d, on_cuda(targets), got.lse, kIgnore, reduction, got.count);
  expect_matches_cpu(got_d, want_d, "cross_entropy", what + " dlogits");
  // Most gradients are ~1/V, far below the table's absolute bound: for f32 and f64 hold every
  // element to a relative bound too (both sides compute exp(x - lse) in the same precision).
  if (logits.dtype() == DType::f32 || logits.dtype() == DType::f64)
    expect_matches_cpu(got_d, want_d, Tolerance{1e-12, 1e-4}, what + " dlogits (relative)");
}

TEST(CudaCrossEntropy, EveryReductionAndDtypeMatchesCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t n = 37, v = 32000;
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const Tensor logits = Tensor::randn({n, v}, 1, dt, 0.0, 2.0);
    const Tensor logits_d = on_cuda(logits);
    const Tensor targets = make_targets(n, v, 2, DType::i64);
    for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::none})
      check_case(logits, logits_d, targets, red,
                 std::string(dtype_name(dt)) + " V=32000 " + reduction_name(red));
  }
}

TEST(CudaCrossEntropy, SmallVocabulariesAndI32Targets) {
  SL_SKIP_WITHOUT_CUDA();
  for (int64_t v : {1, 5, 300, 1027}) {
    const Tensor logits = Tensor::randn({9, v}, 3, DType::f32);
    const Tensor targets = make_targets(9, v, 4, DType::i32, 4);
    for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::none})
      check_case(logits, on_cuda(logits), targets, red, "f32 V=" + std::to_string(v) + " " + reduction_name(red));
  }
}

TEST(CudaCrossEntropy, StridedAndTransposedLogitsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t n = 11, v = 3001;
  const Tensor wide = Tensor::randn({n, v + 64}, 5, DType::bf16);
  const Tensor targets = make_targets(n, v, 6, DType::i64);
  // Rows with a stride of v + 64 elements (read in place).
  check_case(ops::narrow(wide, 1, 0, v), ops::narrow(on_cuda(wide), 1, 0, v), targets, ops::Reduction::mean,
             "narrowed bf16 logits");
  // Logits whose vocabulary dim is strided (copied to unit stride first).
  const Tensor tall = Tensor::randn({v, n}, 7, DType::f32);
  check_case(ops::transpose(tall, 0, 1), ops::transpose(on_cuda(tall), 0, 1), targets, ops::Reduction::sum,
             "transposed f32 logits");
  // Strided targets.
  const Tensor t2 = make_targets(2 * n, v, 8, DType::i64);
  const Tensor strided = ops::slice(t2, 0, 0, 2 * n, 2);
  const Tensor logits = Tensor::randn({n, v}, 9, DType::f32);
  const ops::CrossEntropyOut want = ops::cross_entropy_fwd(logits, strided, kIgnore, ops::Reduction::none);
  const ops::CrossEntropyOut got =
      ops::cross_entropy_fwd(on_cuda(logits), ops::slice(on_cuda(t2), 0, 0, 2 * n, 2), kIgnore, ops::Reduction::none);
  expect_matches_cpu(got.loss, want.loss, "cross_entropy", "strided targets loss");
}

TEST(CudaCrossEntropy, AllIgnoredMeanIsNaNWithZeroGradient) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor logits = on_cuda(Tensor::randn({4, 50}, 10, DType::f32));
  const Tensor targets = on_cuda(Tensor::from_ints({kIgnore, kIgnore, kIgnore, kIgnore}, {4}, DType::i64));
  const ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, targets, kIgnore, ops::Reduction::mean);
  EXPECT_TRUE(std::isnan(out.loss.item()));
  EXPECT_EQ(out.count, 0);
  const Tensor d = ops::cross_entropy_bwd(on_cuda(Tensor::scalar(1.0)), logits, targets, out.lse, kIgnore,
                                          ops::Reduction::mean, out.count);
  for (double x : d.to_double_vector()) ASSERT_EQ(x, 0.0);
  const ops::CrossEntropyOut sum = ops::cross_entropy_fwd(logits, targets, kIgnore, ops::Reduction::sum);
  EXPECT_EQ(sum.loss.item(), 0.0);
}

TEST(CudaCrossEntropy, RerunsAreBitIdentical) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor logits = on_cuda(Tensor::randn({300, 5000}, 11, DType::bf16));
  const Tensor targets = on_cuda(make_targets(300, 5000, 12, DType::i64));
  const ops::CrossEntropyOut a = ops::cross_entropy_fwd(logits, targets, kIgnore, ops::Reduction::mean);
  const ops::CrossEntropyOut b = ops::cross_entropy_fwd(logits, targets, kIgnore, ops::Reduction::mean);
  EXPECT_EQ(a.loss.item(), b.loss.item());
  EXPECT_EQ(a.lse.to_double_vector(), b.lse.to_double_vector());
  const Tensor g = on_cuda(Tensor::scalar(1.0));
  EXPECT_EQ(ops::cross_entropy_bwd(g, logits, targets, a.lse, kIgnore, ops::Reduction::mean, a.count)
                .to_double_vector(),
            ops::cross_entropy_bwd(g, logits, targets, b.lse, kIgnore, ops::Reduction::mean, b.count)
                .to_double_vector());
}

TEST(CudaCrossEntropy, ErrorsNameTheOpAndTheTarget) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor logits = on_cuda(Tensor::randn({5, 40}, 13, DType::f32));
  const Tensor bad = on_cuda(Tensor::from_ints({1, 2, 3, 40, -3}, {5}, DType::i64));
  try {
    ops::cross_entropy_fwd(logits, bad, kIgnore, ops::Reduction::mean);
    ADD_FAILURE() << "target 40 of a 40-token vocabulary did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_fwd: target 40 at row 3 is out of range [0, 40)"));
  }
  const Tensor good = on_cuda(Tensor::from_ints({1, 2, 3, 4, 5}, {5}, DType::i64));
  const ops::CrossEntropyOut out = ops::cross_entropy_fwd(logits, good, kIgnore, ops::Reduction::sum);
  try {
    ops::cross_entropy_bwd(on_cuda(Tensor::scalar(1.0)), logits, bad, out.lse, kIgnore, ops::Reduction::sum, 5);
    ADD_FAILURE() << "backward with a bad target did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_bwd: target 40 at row 3"));
  }
  try {
    ops::cross_entropy_bwd(on_cuda(Tensor::scalar(1.0)), logits, good, out.lse, kIgnore, ops::Reduction::mean, 0);
    ADD_FAILURE() << "mean with count 0 did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_bwd: count must be positive"));
  }
  try {
    ops::cross_entropy_fwd(logits, Tensor::from_ints({1, 2, 3, 4, 5}, {5}, DType::i64), kIgnore,
                           ops::Reduction::mean);
    ADD_FAILURE() << "CPU targets with CUDA logits did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cross_entropy_fwd: device mismatch"));
  }
}

}  // namespace
}  // namespace shardlab

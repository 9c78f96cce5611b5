// CUDA embedding lookup and its deterministic backward against the CPU kernels: float and integer
// weights, i32/i64 ids of any shape, strided weights and gradients, many repeated ids (the
// backward sums each row's tokens in token order, exactly as the CPU: f32 results are equal bit
// for bit, and reruns are bit-identical), and out-of-range ids named in the error.
// Skips without a GPU (written where none was visible: compiled, not yet run).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

// Ids of `shape` drawn from [0, range) (a small range makes many repeats).
Tensor random_ids(const Shape& shape, int64_t range, uint64_t seed, DType dtype) {
  std::mt19937_64 gen(seed);
  std::vector<int64_t> ids(static_cast<size_t>(shape_numel(shape)));
  for (int64_t& id : ids) id = static_cast<int64_t>(gen() % static_cast<uint64_t>(range));
  return Tensor::from_ints(ids, shape, dtype);
}

TEST(CudaEmbedding, LookupMatchesCpuForEveryWeightDtype) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t V = 1000, C = 77;
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64, DType::i64, DType::i32}) {
    const Tensor w = is_floating(dt) ? Tensor::randn({V, C}, 1, dt)
                                     : Tensor::from_vector(Tensor::rand({V, C}, 1, DType::f64, -50, 50)
                                                               .to_double_vector(), {V, C}, dt);
    for (DType id_dt : {DType::i32, DType::i64}) {
      const Tensor ids = random_ids({4, 9}, V, 2, id_dt);
      const std::string what = std::string("embedding ") + dtype_name(dt) + " ids " + dtype_name(id_dt);
      expect_matches_cpu(ops::embedding(on_cuda(w), on_cuda(ids)), ops::embedding(w, ids), Tolerance{0, 0}, what);
    }
  }
}

TEST(CudaEmbedding, StridedWeightAndIdsMatchCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor wt = Tensor::randn({64, 500}, 3, DType::bf16);  // weight = its transpose: (500, 64), strided
  const Tensor ids = random_ids({6, 20}, 500, 4, DType::i64);
  expect_matches_cpu(ops::embedding(ops::transpose(on_cuda(wt), 0, 1), ops::transpose(on_cuda(ids), 0, 1)),
                     ops::embedding(ops::transpose(wt, 0, 1), ops::transpose(ids, 0, 1)), Tolerance{0, 0},
                     "transposed weight and ids");
  const Tensor scalar_id = Tensor::from_ints({7}, {}, DType::i64);
  expect_matches_cpu(ops::embedding(ops::transpose(on_cuda(wt), 0, 1), on_cuda(scalar_id)),
                     ops::embedding(ops::transpose(wt, 0, 1), scalar_id), Tolerance{0, 0}, "a 0-d id");
}

TEST(CudaEmbedding, BackwardSumsInTokenOrderLikeTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const int64_t V = 5000, C = 96;
  // 2048 tokens over 40 ids: ~50 tokens per used row (the summation order matters), most rows unused.
  const Tensor ids = random_ids({8, 256}, 40, 5, DType::i64);
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    const Tensor grad = Tensor::randn({8, 256, C}, 6, dt);
    const Tensor want = ops::embedding_backward(grad, ids, V);
    const Tensor got = ops::embedding_backward(on_cuda(grad), on_cuda(ids), V);
    // Same order, same accumulator type, one rounding: equal bit for bit.
    expect_matches_cpu(got, want, Tolerance{0, 0}, std::string("embedding_backward ") + dtype_name(dt));
  }
}

TEST(CudaEmbedding, BackwardRerunsAreBitIdentical) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor ids = on_cuda(random_ids({4096}, 7, 7, DType::i32));  // ~585 tokens per row
  const Tensor grad = on_cuda(Tensor::randn({4096, 130}, 8, DType::f32));
  const std::vector<double> a = ops::embedding_backward(grad, ids, 7).to_double_vector();
  const std::vector<double> b = ops::embedding_backward(grad, ids, 7).to_double_vector();
  EXPECT_EQ(a, b);
}

TEST(CudaEmbedding, BackwardOfStridedGradAndEmptyInputs) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor ids = random_ids({30}, 12, 9, DType::i64);
  const Tensor gt = Tensor::randn({16, 30}, 10, DType::f32);  // grad = its transpose: (30, 16)
  expect_matches_cpu(ops::embedding_backward(ops::transpose(on_cuda(gt), 0, 1), on_cuda(ids), 12),
                     ops::embedding_backward(ops::transpose(gt, 0, 1), ids, 12), Tolerance{0, 0},
                     "strided gradient");
  const Tensor no_ids = Tensor::from_ints({}, {0}, DType::i64);
  const Tensor no_grad = Tensor::randn({0, 16}, 11, DType::f32);
  expect_matches_cpu(ops::embedding_backward(on_cuda(no_grad), on_cuda(no_ids), 12),
                     ops::embedding_backward(no_grad, no_ids, 12), Tolerance{0, 0}, "no tokens: zeros");
}

TEST(CudaEmbedding, OutOfRangeIdsAreNamed) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor w = on_cuda(Tensor::randn({10, 4}, 12, DType::f32));
  const Tensor bad = on_cuda(Tensor::from_ints({1, 2, 3, 4, 5, 10, -1}, {7}, DType::i64));
  try {
    ops::embedding(w, bad);
    ADD_FAILURE() << "id 10 of 10 embeddings did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("embedding: id 10 at position 5 is out of range for 10 embeddings"));
  }
  try {
    ops::embedding_backward(on_cuda(Tensor::randn({7, 4}, 13, DType::f32)), bad, 10);
    ADD_FAILURE() << "backward with id 10 of 10 embeddings did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("embedding_backward: id 10 at position 5 is out of range for 10 embeddings"));
  }
  try {
    ops::embedding(w, Tensor::from_ints({1}, {1}, DType::i64));
    ADD_FAILURE() << "CPU ids with a CUDA weight did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("embedding: device mismatch"));
  }
}

}  // namespace
}  // namespace shardlab

// ops::embedding and ops::embedding_backward against hand-computed rows (repeated ids included),
// 16-bit accumulation in f32, determinism, and errors that name the bad id and the table size.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

// weight[v][c] = 10 v + c, so every looked-up row says which id it came from.
Tensor table(int64_t V, int64_t C, DType dt = DType::f32) {
  std::vector<double> w;
  for (int64_t v = 0; v < V; ++v)
    for (int64_t c = 0; c < C; ++c) w.push_back(10.0 * v + c);
  return Tensor::from_vector(w, {V, C}, dt);
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Embedding, ForwardGathersRowsIncludingRepeats) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    for (DType idt : {DType::i64, DType::i32}) {
      Tensor ids = Tensor::from_ints({3, 0, 3, 1, 1, 2}, {2, 3}, idt);
      Tensor out = ops::embedding(table(4, 3, dt), ids);
      EXPECT_EQ(out.shape(), (Shape{2, 3, 3}));
      EXPECT_EQ(out.dtype(), dt);
      EXPECT_EQ(out.to_double_vector(), (std::vector<double>{30, 31, 32, 0, 1, 2, 30, 31, 32,  //
                                                             10, 11, 12, 10, 11, 12, 20, 21, 22}));
    }
  }
}

TEST(Embedding, ForwardReadsNonContiguousWeightAndIds) {
  // weight as the transpose of a (C, V) tensor; ids as a stepped slice.
  Tensor w = ops::transpose(ops::contiguous(ops::transpose(table(5, 2), 0, 1)), 0, 1);
  ASSERT_FALSE(w.is_contiguous());
  Tensor ids = ops::slice(Tensor::from_ints({4, 9, 0, 9, 2, 9}, {6}), 0, 0, 6, 2);  // [4, 0, 2]
  EXPECT_EQ(ops::embedding(w, ids).to_double_vector(), (std::vector<double>{40, 41, 0, 1, 20, 21}));
  EXPECT_EQ(ops::embedding(w, Tensor::from_ints({2}, {}, DType::i64)).shape(), (Shape{2}));
}

TEST(Embedding, BackwardSumsRepeatedIdsByHand) {
  Tensor ids = Tensor::from_ints({3, 0, 3, 1, 1, 3}, {2, 3});
  // grad[t] = (t + 1) * [1, 10]
  std::vector<double> g;
  for (int t = 0; t < 6; ++t) g.insert(g.end(), {double(t + 1), 10.0 * (t + 1)});
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    Tensor dw = ops::embedding_backward(Tensor::from_vector(g, {2, 3, 2}, dt), ids, 5);
    EXPECT_EQ(dw.shape(), (Shape{5, 2}));
    EXPECT_EQ(dw.dtype(), dt);
    // id 0: token 1 (2); id 1: tokens 3, 4 (4 + 5); id 2: none; id 3: tokens 0, 2, 5 (1 + 3 + 6); id 4: none.
    EXPECT_EQ(dw.to_double_vector(), (std::vector<double>{2, 20, 9, 90, 0, 0, 10, 100, 0, 0}));
  }
  // A non-contiguous grad (transposed view) gives the same result.
  Tensor gt = ops::transpose(ops::contiguous(ops::transpose(Tensor::from_vector(g, {6, 2}), 0, 1)), 0, 1);
  EXPECT_EQ(ops::embedding_backward(gt, Tensor::from_ints({3, 0, 3, 1, 1, 3}, {6}, DType::i32), 5).to_double_vector(),
            (std::vector<double>{2, 20, 9, 90, 0, 0, 10, 100, 0, 0}));
}

TEST(Embedding, BackwardAccumulates16BitGradsInF32) {
  // 1000 grads of 1.0 into one row: a bf16 running sum would stall at 256 (256 + 1 rounds back
  // to 256); f32 accumulation rounded once gives 1000, which bf16 represents exactly.
  Tensor ids = Tensor::from_ints(std::vector<int64_t>(1000, 1), {1000});
  Tensor dw = ops::embedding_backward(Tensor::ones({1000, 1}, DType::bf16), ids, 2);
  EXPECT_EQ(dw.to_double_vector(), (std::vector<double>{0, 1000}));
}

TEST(Embedding, BackwardIsDeterministicAndMatchesNaiveSum) {
  const int64_t n = 4096, V = 50, C = 64;
  std::vector<int64_t> idv(n);
  for (int64_t t = 0; t < n; ++t) idv[t] = (t * 7919 + t / 3) % V;
  Tensor ids = Tensor::from_ints(idv, {8, n / 8});
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor grad = Tensor::randn({8, n / 8, C}, 81, dt);
    Tensor a = ops::embedding_backward(grad, ids, V), b = ops::embedding_backward(grad, ids, V);
    EXPECT_EQ(a.to_double_vector(), b.to_double_vector()) << dtype_name(dt);
    if (dt != DType::f64) continue;
    std::vector<double> want(V * C, 0.0), gv = grad.to_double_vector();
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < C; ++c) want[idv[t] * C + c] += gv[t * C + c];
    const auto tol = tolerance("embedding", dt);
    const std::vector<double> got = a.to_double_vector();
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], tol.atol + tol.rtol * std::abs(want[i])) << "element " << i;
  }
}

TEST(Embedding, BadInputsNameTheIdAndTableSize) {
  const std::string range = message_of([] { ops::embedding(table(4, 3), Tensor::from_ints({1, 7}, {2})); });
  EXPECT_THAT(range, HasSubstr("embedding"));
  EXPECT_THAT(range, HasSubstr("id 7"));
  EXPECT_THAT(range, HasSubstr("4 embeddings"));
  EXPECT_THAT(range, HasSubstr("(4, 3)"));
  EXPECT_THAT(message_of([] { ops::embedding(table(4, 3), Tensor::from_ints({-1}, {1}, DType::i32)); }),
              HasSubstr("id -1"));
  EXPECT_THAT(message_of([] { ops::embedding(table(4, 3), Tensor::zeros({2}, DType::f32)); }),
              HasSubstr("embedding"));
  const std::string dims = message_of([] { ops::embedding(Tensor::zeros({4}), Tensor::from_ints({1}, {1})); });
  EXPECT_THAT(dims, HasSubstr("embedding"));
  EXPECT_THAT(dims, HasSubstr("(4,)"));
  const std::string grad = message_of(
      [] { ops::embedding_backward(Tensor::zeros({3, 2}), Tensor::from_ints({1, 2}, {2}), 4); });
  EXPECT_THAT(grad, HasSubstr("embedding_backward"));
  EXPECT_THAT(grad, HasSubstr("(3, 2)"));
  EXPECT_THAT(grad, HasSubstr("(2,)"));
  EXPECT_THAT(message_of([] { ops::embedding_backward(Tensor::zeros({1, 2}), Tensor::from_ints({4}, {1}), 4); }),
              HasSubstr("id 4"));
}

}  // namespace
}  // namespace shardlab

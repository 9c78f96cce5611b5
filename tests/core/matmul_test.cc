// ops::matmul against a naive f64 triple loop written here: every float dtype, transposed and
// stepped (non-contiguous) operands, broadcast batches, Llama-like shapes, determinism, errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

// The reference: out[batch, i, j] = sum_k a[batch_a, i, k] * b[batch_b, k, j] in f64, over the
// logical values of the inputs (so 16-bit inputs are compared after their own rounding), with
// numpy broadcasting of the batch dims done index by index.
struct Reference {
  Shape shape;
  std::vector<double> values;
};

Reference naive_matmul(const Tensor& a, const Tensor& b) {
  const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int64_t nd = std::max(a.dim(), b.dim()) - 2;
  auto batch_dim = [&](const Tensor& t, int64_t d) {  // size of out batch dim d in t (1 if absent)
    const int64_t own = t.dim() - 2, lead = nd - own;
    return d < lead ? int64_t(1) : t.size(d - lead);
  };
  Shape batch(static_cast<size_t>(nd));
  for (int64_t d = 0; d < nd; ++d) batch[d] = std::max(batch_dim(a, d), batch_dim(b, d));
  Reference r;
  r.shape = batch;
  r.shape.push_back(M);
  r.shape.push_back(N);
  const int64_t nb = shape_numel(batch);
  r.values.assign(static_cast<size_t>(nb * M * N), 0.0);
  for (int64_t i = 0; i < nb; ++i) {
    // Linear index of batch entry i within a's and b's own (unbroadcast) batch.
    int64_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      const int64_t da = batch_dim(a, d), db = batch_dim(b, d);
      ia += (da == 1 ? 0 : idx) * sa;
      ib += (db == 1 ? 0 : idx) * sb;
      sa *= da;
      sb *= db;
    }
    // Each output sums its K products in k order; n innermost keeps b's reads sequential.
    for (int64_t m = 0; m < M; ++m) {
      double* row = &r.values[static_cast<size_t>(i * M * N + m * N)];
      for (int64_t k = 0; k < K; ++k) {
        const double aik = av[ia * M * K + m * K + k];
        const double* brow = &bv[static_cast<size_t>(ib * K * N + k * N)];
        for (int64_t n = 0; n < N; ++n) row[n] += aik * brow[n];
      }
    }
  }
  return r;
}

void expect_matches_naive(const Tensor& a, const Tensor& b, const std::string& what) {
  Tensor c = ops::matmul(a, b);
  Reference want = naive_matmul(a, b);
  ASSERT_EQ(c.shape(), want.shape) << what;
  ASSERT_EQ(c.dtype(), a.dtype()) << what;
  const auto tol = tolerance("matmul", a.dtype());
  const std::vector<double> got = c.to_double_vector();
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    const double err = std::abs(got[i] - want.values[i]);
    if (!(err <= tol.atol + tol.rtol * std::abs(want.values[i]))) {
      ADD_FAILURE() << what << " (" << dtype_name(a.dtype()) << "): element " << i << " got " << got[i] << ", want "
                    << want.values[i];
      ++bad;
    }
  }
}

const DType kFloatTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

TEST(Matmul, HandComputed2x2) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector({5, 6, 7, 8}, {2, 2});
  EXPECT_EQ(ops::matmul(a, b).to_double_vector(), (std::vector<double>{19, 22, 43, 50}));
}

TEST(Matmul, MatchesNaiveForEveryFloatDtype) {
  for (DType dt : kFloatTypes) {
    expect_matches_naive(Tensor::randn({5, 7}, 1, dt), Tensor::randn({7, 3}, 2, dt), "small");
    expect_matches_naive(Tensor::randn({33, 65}, 3, dt), Tensor::randn({65, 17}, 4, dt), "odd sizes");
    expect_matches_naive(Tensor::randn({1, 40}, 5, dt), Tensor::randn({40, 9}, 6, dt), "one row");
    expect_matches_naive(Tensor::randn({9, 40}, 7, dt), Tensor::randn({40, 1}, 8, dt), "one column");
    // Large enough that Eigen splits the product across threads.
    expect_matches_naive(Tensor::randn({96, 128}, 9, dt), Tensor::randn({128, 80}, 10, dt), "threaded");
  }
}

TEST(Matmul, TransposedOperandsNeedNoCopyAndMatch) {
  for (DType dt : kFloatTypes) {
    Tensor a = Tensor::randn({6, 11}, 11, dt), at = ops::transpose(Tensor::randn({11, 6}, 12, dt), 0, 1);
    Tensor b = Tensor::randn({11, 4}, 13, dt), bt = ops::transpose(Tensor::randn({4, 11}, 14, dt), 0, 1);
    ASSERT_FALSE(at.is_contiguous());
    expect_matches_naive(at, b, "a transposed");
    expect_matches_naive(a, bt, "b transposed");
    expect_matches_naive(at, bt, "both transposed");
    // Batched transposes: (B, K, M) -> (B, M, K).
    Tensor a3 = ops::transpose(Tensor::randn({3, 11, 6}, 15, dt), 1, 2);
    Tensor b3 = ops::transpose(Tensor::randn({3, 4, 11}, 16, dt), 1, 2);
    expect_matches_naive(a3, b3, "batched transposes");
  }
}

TEST(Matmul, SteppedAndOffsetViewsMatch) {
  for (DType dt : kFloatTypes) {
    // Neither matrix stride is 1: f32/f64 fall back to one contiguous copy, 16-bit widen directly.
    Tensor a = ops::slice(Tensor::randn({5, 14}, 21, dt), 1, 0, 14, 2);           // (5, 7), strides (14, 2)
    Tensor b = ops::slice(ops::slice(Tensor::randn({14, 6}, 22, dt), 0, 1, 14, 2), 1, 0, 6, 2);  // (7, 3)
    expect_matches_naive(a, b, "stepped");
    Tensor big = Tensor::randn({10, 12}, 23, dt);
    expect_matches_naive(ops::narrow(ops::narrow(big, 0, 2, 5), 1, 3, 7), Tensor::randn({7, 2}, 24, dt),
                         "offset sub-block");
    // expand()ed rows (row stride 0) and columns (column stride 0) inside the matrix.
    expect_matches_naive(ops::expand(Tensor::randn({1, 6}, 25, dt), {4, 6}), Tensor::randn({6, 3}, 26, dt),
                         "expanded rows");
    expect_matches_naive(Tensor::randn({4, 6}, 27, dt), ops::expand(Tensor::randn({6, 1}, 28, dt), {6, 3}),
                         "expanded columns");
  }
}

TEST(Matmul, BatchedWithBroadcasting) {
  for (DType dt : kFloatTypes) {
    expect_matches_naive(Tensor::randn({2, 1, 4, 5}, 31, dt), Tensor::randn({3, 5, 6}, 32, dt), "(2,1,4,5)@(3,5,6)");
    expect_matches_naive(Tensor::randn({4, 5}, 33, dt), Tensor::randn({3, 5, 6}, 34, dt), "2-D a, batched b");
    expect_matches_naive(Tensor::randn({2, 3, 4, 5}, 35, dt), Tensor::randn({5, 6}, 36, dt), "batched a, 2-D b");
    expect_matches_naive(Tensor::randn({2, 3, 4, 5}, 37, dt), Tensor::randn({1, 1, 5, 6}, 38, dt), "size-1 batch");
    expect_matches_naive(Tensor::randn({3, 4, 5}, 39, dt), Tensor::randn({1, 1, 5, 6}, 40, dt), "b has more dims");
    // An expand()ed batch has stride 0.
    Tensor shared = ops::expand(Tensor::randn({1, 4, 5}, 41, dt), {3, 4, 5});
    expect_matches_naive(shared, Tensor::randn({3, 5, 2}, 42, dt), "expanded a");
    // Many small products: split across threads by product.
    expect_matches_naive(Tensor::randn({64, 3, 8}, 43, dt), Tensor::randn({64, 8, 5}, 44, dt), "many small");
  }
}

TEST(Matmul, LlamaLikeShapes) {
  // (B, T, C) activations times transposed (out, in) weights, and attention's q @ k^T, p @ v.
  const int64_t B = 2, T = 16, C = 64, I = 176, H = 4, D = 16;
  for (DType dt : kFloatTypes) {
    Tensor x = Tensor::randn({B, T, C}, 51, dt, 0.0, 0.5);
    Tensor wq = Tensor::randn({C, C}, 52, dt, 0.0, 0.1), wup = Tensor::randn({I, C}, 53, dt, 0.0, 0.1);
    Tensor wdown = Tensor::randn({C, I}, 54, dt, 0.0, 0.1);
    expect_matches_naive(x, ops::transpose(wq, 0, 1), "q_proj");
    expect_matches_naive(x, ops::transpose(wup, 0, 1), "up_proj");
    expect_matches_naive(Tensor::randn({B, T, I}, 55, dt, 0.0, 0.5), ops::transpose(wdown, 0, 1), "down_proj");
    Tensor q = ops::transpose(Tensor::randn({B, T, H, D}, 56, dt), 1, 2);  // (B, H, T, D)
    Tensor k = ops::transpose(Tensor::randn({B, T, H, D}, 57, dt), 1, 2);
    expect_matches_naive(q, ops::transpose(k, -2, -1), "q @ k^T");
    expect_matches_naive(Tensor::rand({B, H, T, T}, 58, dt), k, "p @ v");
  }
}

TEST(Matmul, SixteenBitOperandsLargerThanOneScratchBlock) {
  // With K = 65536 the f32 scratch (4Mi floats per block) holds 64 rows of A and 64 columns of B:
  // (66, K) @ (K, 66) is split into 2 row blocks x 2 column panels, with a transposed B. (f16
  // takes the same tiling code; one dtype keeps this test cheap.)
  const int64_t K = 65536;
  Tensor a = Tensor::randn({66, K}, 45, DType::bf16, 0.0, 0.125);
  Tensor b = ops::transpose(Tensor::randn({66, K}, 46, DType::bf16, 0.0, 0.125), 0, 1);
  expect_matches_naive(a, b, "tiled 16-bit");
}

TEST(Matmul, EmptyAndZeroInnerDim) {
  Tensor z = ops::matmul(Tensor::randn({3, 0}, 61), Tensor::randn({0, 4}, 62));
  EXPECT_EQ(z.shape(), (Shape{3, 4}));
  for (double v : z.to_double_vector()) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(ops::matmul(Tensor::randn({0, 5}, 63), Tensor::randn({5, 4}, 64)).shape(), (Shape{0, 4}));
  EXPECT_EQ(ops::matmul(Tensor::randn({0, 2, 5}, 65), Tensor::randn({5, 4}, 66)).shape(), (Shape{0, 2, 4}));
}

TEST(Matmul, DeterministicRunToRun) {
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor a = Tensor::randn({4, 130, 96}, 71, dt), b = Tensor::randn({96, 150}, 72, dt);
    Tensor bb = Tensor::randn({4, 96, 150}, 73, dt);
    EXPECT_EQ(ops::matmul(a, b).to_double_vector(), ops::matmul(a, b).to_double_vector());
    EXPECT_EQ(ops::matmul(a, bb).to_double_vector(), ops::matmul(a, bb).to_double_vector());
  }
}

TEST(Matmul, BadInputsNameTheOpAndShapes) {
  auto message_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string inner = message_of([] { ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  EXPECT_THAT(inner, HasSubstr("matmul"));
  EXPECT_THAT(inner, HasSubstr("inner dims"));
  EXPECT_THAT(inner, HasSubstr("(2, 3)"));
  EXPECT_THAT(inner, HasSubstr("(4, 5)"));
  const std::string dtypes =
      message_of([] { ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 5}, DType::f64)); });
  EXPECT_THAT(dtypes, HasSubstr("matmul"));
  EXPECT_THAT(dtypes, HasSubstr("f64"));
  EXPECT_THAT(dtypes, HasSubstr("(3, 5)"));
  const std::string one_d = message_of([] { ops::matmul(Tensor::zeros({3}), Tensor::zeros({3, 5})); });
  EXPECT_THAT(one_d, HasSubstr("matmul"));
  EXPECT_THAT(one_d, HasSubstr("(3,)"));
  const std::string batch =
      message_of([] { ops::matmul(Tensor::zeros({2, 4, 3}), Tensor::zeros({5, 3, 6})); });
  EXPECT_THAT(batch, HasSubstr("matmul"));
  EXPECT_THAT(batch, HasSubstr("(2, 4, 3)"));
  EXPECT_THAT(batch, HasSubstr("(5, 3, 6)"));
  const std::string ints = message_of(
      [] { ops::matmul(Tensor::zeros({2, 3}, DType::i64), Tensor::zeros({3, 2}, DType::i64)); });
  EXPECT_THAT(ints, HasSubstr("matmul"));
  EXPECT_THAT(ints, HasSubstr("i64"));
}

}  // namespace
}  // namespace shardlab

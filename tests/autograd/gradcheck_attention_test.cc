// Gradchecks (float64 central differences) for the differentiable attention: causal GQA,
// non-causal with T != S, packed segment ids, rows without keys, non-contiguous inputs, and sizes
// that cross the kernel's 64-row block boundary.
#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab {
namespace {

using testing::expect_gradcheck;

Tensor leaf(const Shape& shape, uint64_t seed) {
  return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true);
}

GradcheckFn attention_fn(const AttentionOptions& options) {
  return [options](const std::vector<Tensor>& in) { return std::vector<Tensor>{attention(in[0], in[1], in[2], options)}; };
}

GRADCHECK_TEST(attention, causal_gqa) {
  expect_gradcheck(attention_fn({}), {leaf({1, 4, 9, 4}, 1), leaf({1, 2, 9, 4}, 2), leaf({1, 2, 9, 4}, 3)});
}

GRADCHECK_TEST(attention, causal_one_kv_head_batch2) {
  expect_gradcheck(attention_fn({}), {leaf({2, 2, 5, 3}, 4), leaf({2, 1, 5, 3}, 5), leaf({2, 1, 5, 3}, 6)});
}

GRADCHECK_TEST(attention, non_causal_more_keys) {
  AttentionOptions opt;
  opt.causal = false;
  opt.scale = 0.6;
  expect_gradcheck(attention_fn(opt), {leaf({1, 2, 5, 3}, 7), leaf({1, 2, 8, 3}, 8), leaf({1, 2, 8, 3}, 9)});
}

// T > S with a causal mask: the first queries see no key (zero output, zero gradient).
GRADCHECK_TEST(attention, causal_more_queries_than_keys) {
  expect_gradcheck(attention_fn({}), {leaf({1, 2, 7, 3}, 10), leaf({1, 1, 4, 3}, 11), leaf({1, 1, 4, 3}, 12)});
}

GRADCHECK_TEST(attention, segment_ids) {
  AttentionOptions opt;
  opt.segment_ids = Tensor::from_ints({0, 0, 0, 1, 1, 1, 1, 2, 2}, {1, 9});
  expect_gradcheck(attention_fn(opt), {leaf({1, 2, 9, 4}, 13), leaf({1, 2, 9, 4}, 14), leaf({1, 2, 9, 4}, 15)});
  opt.causal = false;
  expect_gradcheck(attention_fn(opt), {leaf({1, 2, 9, 4}, 16), leaf({1, 1, 9, 4}, 17), leaf({1, 1, 9, 4}, 18)});
}

// q arrives as a (B, T, H, D) leaf transposed inside the function, k as a non-contiguous leaf.
GRADCHECK_TEST(attention, noncontiguous) {
  Tensor q_bthd = leaf({1, 9, 4, 4}, 19);
  Tensor k = ops::transpose(Tensor::randn({1, 9, 2, 4}, 20, DType::f64), 1, 2).set_requires_grad(true);
  Tensor v = leaf({1, 2, 9, 4}, 21);
  ASSERT_FALSE(k.is_contiguous());
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{attention(transpose(in[0], 1, 2), in[1], in[2], {})};
      },
      {q_bthd, k, v});
}

// 70 queries and keys cross the 64-row query and key blocks (a partial block and a full one).
GRADCHECK_TEST(attention, crosses_block_boundary) {
  expect_gradcheck(attention_fn({}), {leaf({1, 2, 70, 2}, 22), leaf({1, 1, 70, 2}, 23), leaf({1, 1, 70, 2}, 24)});
  AttentionOptions opt;
  std::vector<int64_t> seg(70);
  for (int64_t t = 0; t < 70; ++t) seg[t] = t < 40 ? 0 : 1;
  opt.segment_ids = Tensor::from_ints(seg, {1, 70});
  opt.causal = false;
  expect_gradcheck(attention_fn(opt), {leaf({1, 1, 70, 2}, 25), leaf({1, 1, 70, 2}, 26), leaf({1, 1, 70, 2}, 27)});
}

}  // namespace
}  // namespace shardlab

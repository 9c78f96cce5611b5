// The backward engine: hand-computed gradients, accumulation, topological order on shared
// sub-graphs, retain_graph, grad mode, detach, version-counter errors, grad-ready hooks, and a
// deep graph that a recursive walk would overflow.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/functions.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;

Tensor leaf(std::vector<double> v, Shape shape, DType dtype = DType::f64) {
  Tensor t = Tensor::from_vector(v, shape, dtype);
  t.set_requires_grad(true);
  return t;
}

TEST(Engine, HandComputedGradientsOfAProduct) {
  // y = sum(a * b + a)  ->  dy/da = b + 1, dy/db = a
  Tensor a = leaf({1, 2, 3}, {3}), b = leaf({4, 5, 6}, {3});
  Tensor y = sum(a * b + a);
  EXPECT_DOUBLE_EQ(y.item(), 1 * 4 + 2 * 5 + 3 * 6 + 6);
  backward(y);
  EXPECT_EQ(a.grad().to_double_vector(), (std::vector<double>{5, 6, 7}));
  EXPECT_EQ(b.grad().to_double_vector(), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(a.grad().tag(), MemTag::gradient);
}

TEST(Engine, LeafGradientsAccumulateAcrossBackwardCalls) {
  Tensor a = leaf({1, 2}, {2});
  backward(sum(a * a));
  backward(sum(a * a));
  EXPECT_EQ(a.grad().to_double_vector(), (std::vector<double>{4, 8}));  // 2 * (2a)
}

TEST(Engine, SharedSubgraphRunsOnceAllItsConsumersHaveContributed) {
  // h = a * a is used twice; its node must run once with the summed gradient.
  Tensor a = leaf({3}, {1});
  Tensor h = a * a;
  Tensor y = sum(h * h + h);  // y = a^4 + a^2, dy/da = 4a^3 + 2a = 114
  backward(y);
  EXPECT_DOUBLE_EQ(a.grad().item(), 114.0);
}

TEST(Engine, SecondBackwardNeedsRetainGraph) {
  Tensor a = leaf({2}, {1});
  Tensor y = sum(a * a);
  backward(y, Tensor(), {.retain_graph = true});
  backward(y);
  EXPECT_DOUBLE_EQ(a.grad().item(), 8.0);
  try {
    backward(y);
    FAIL() << "a third backward through a freed graph succeeded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("second time"));
    EXPECT_THAT(e.what(), HasSubstr("retain_graph"));
  }
}

TEST(Engine, NoGradGuardRecordsNothing) {
  Tensor a = leaf({1, 2}, {2});
  Tensor y;
  {
    NoGradGuard guard;
    y = a * a;
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(backward(sum(y)), Error);
  EXPECT_TRUE(GradMode::enabled());
}

TEST(Engine, DetachCutsTheGraphButSharesData) {
  Tensor a = leaf({1, 2}, {2});
  Tensor d = detach(a * a);
  EXPECT_FALSE(d.requires_grad());
  Tensor y = sum(a * d);  // d is a constant: dy/da = d = a^2
  backward(y);
  EXPECT_EQ(a.grad().to_double_vector(), (std::vector<double>{1, 4}));
}

TEST(Engine, InPlaceChangeOfASavedTensorIsAnErrorNamingTheOp) {
  Tensor a = leaf({1, 2}, {2});
  Tensor b = Tensor::from_vector({3, 4}, {2}, DType::f64);
  Tensor y = sum(mul(a, b));  // mul saves b for dy/da
  ops::add_(b, Tensor::ones({2}, DType::f64));
  try {
    backward(y);
    FAIL() << "backward used a modified saved tensor";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("mul"));
    EXPECT_THAT(e.what(), HasSubstr("modified in place"));
  }
}

TEST(Engine, GradReadyHooksFireOncePerBackwardAfterAccumulation) {
  Tensor w = leaf({1, 1}, {2});
  std::vector<double> seen;
  int calls = 0;
  register_grad_ready_hook(w, [&](const Tensor& t) {
    ++calls;
    seen = t.grad().to_double_vector();
  });
  Tensor x = Tensor::from_vector({2, 3}, {2}, DType::f64);
  // w is used twice: the hook must see the total, not a partial sum.
  backward(sum(w * x + w * x));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<double>{4, 6}));
  EXPECT_THROW(register_grad_ready_hook(w * x, [](const Tensor&) {}), Error);
}

TEST(Engine, GradReturnsGradientsWithoutTouchingDotGrad) {
  Tensor a = leaf({1, 2}, {2});
  Tensor h = a * a;
  Tensor y = sum(h * a);  // y = sum(a^3)
  std::vector<Tensor> g = grad({y}, {}, {a, h});
  EXPECT_EQ(g[0].to_double_vector(), (std::vector<double>{3, 12}));  // 3a^2
  EXPECT_EQ(g[1].to_double_vector(), (std::vector<double>{1, 2}));   // dy/dh = a
  EXPECT_FALSE(a.grad().defined());
}

TEST(Engine, NonScalarRootNeedsAnExplicitGradient) {
  Tensor a = leaf({1, 2}, {2});
  Tensor y = a * a;
  EXPECT_THROW(backward(y), Error);
  backward(y, Tensor::from_vector({1, 10}, {2}, DType::f64));
  EXPECT_EQ(a.grad().to_double_vector(), (std::vector<double>{2, 40}));
}

TEST(Engine, DeepChainsDoNotOverflowTheStack) {
  Tensor a = leaf({1}, {1});
  Tensor x = a;
  for (int i = 0; i < 100000; ++i) x = add_scalar(x, 1e-6);
  backward(sum(x));
  EXPECT_DOUBLE_EQ(a.grad().item(), 1.0);
}

TEST(Engine, IntegerInputsGetNoGradientAndBranchesWithoutGradientAreSkipped) {
  Tensor w = leaf({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor ids = Tensor::from_ints({2, 0, 2}, {3});
  Tensor unused = leaf({1}, {1});
  Tensor z = unused * unused;  // never reaches the loss
  (void)z;
  backward(sum(embedding(w, ids)));
  EXPECT_EQ(w.grad().to_double_vector(), (std::vector<double>{1, 1, 0, 0, 2, 2}));
  EXPECT_FALSE(unused.grad().defined());
}

}  // namespace
}  // namespace shardlab

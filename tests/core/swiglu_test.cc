// SwiGLU kernels against an f64 reference from the definition silu(g) * u = g / (1 + e^-g) * u
// and its derivative, in every float dtype and on strided views of one fused projection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/compare.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using shardlab::testing::Tolerance;
using shardlab::testing::tolerance;

using shardlab::testing::expect_all_close;

double sig(double g) { return 1.0 / (1.0 + std::exp(-g)); }

struct SwigluRef {
  std::vector<double> out, dgate, dup;
};

SwigluRef swiglu_reference(const std::vector<double>& g, const std::vector<double>& u, const std::vector<double>& d) {
  SwigluRef r;
  for (size_t i = 0; i < g.size(); ++i) {
    const double silu = g[i] * sig(g[i]);
    r.out.push_back(silu * u[i]);
    if (d.empty()) continue;
    // d/dg [g sig(g)] = sig(g) + g sig(g) (1 - sig(g)) by the product rule.
    r.dgate.push_back(d[i] * u[i] * (sig(g[i]) + g[i] * sig(g[i]) * (1.0 - sig(g[i]))));
    r.dup.push_back(d[i] * silu);
  }
  return r;
}

TEST(Swiglu, ForwardAndBackwardMatchReferenceInEveryFloatDtype) {
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    Tensor g = ops::to_dtype(Tensor::randn({4, 33}, 61, DType::f64, 0.0, 3.0), dt);
    Tensor u = ops::to_dtype(Tensor::randn({4, 33}, 62, DType::f64), dt);
    Tensor d = ops::to_dtype(Tensor::randn({4, 33}, 63, DType::f64), dt);
    SwigluRef ref = swiglu_reference(g.to_double_vector(), u.to_double_vector(), d.to_double_vector());
    Tensor out = ops::swiglu_fwd(g, u);
    EXPECT_EQ(out.dtype(), dt);
    EXPECT_EQ(out.shape(), g.shape());
    expect_all_close(out.to_double_vector(), ref.out, tolerance("swiglu", dt), std::string("out ") + dtype_name(dt));
    ops::SwigluGrads grads = ops::swiglu_bwd(d, g, u);
    expect_all_close(grads.dgate.to_double_vector(), ref.dgate, tolerance("swiglu", dt),
                     std::string("dgate ") + dtype_name(dt));
    expect_all_close(grads.dup.to_double_vector(), ref.dup, tolerance("swiglu", dt),
                     std::string("dup ") + dtype_name(dt));
  }
}

TEST(Swiglu, ExtremeGatesStayFinite) {
  Tensor g = Tensor::from_vector({-1000.0, -50.0, 0.0, 50.0, 1000.0}, {5});
  Tensor u = Tensor::ones({5});
  std::vector<double> out = ops::swiglu_fwd(g, u).to_double_vector();
  std::vector<double> dg = ops::swiglu_bwd(Tensor::ones({5}), g, u).dgate.to_double_vector();
  const std::vector<double> want_out = {0.0, -50.0 * sig(-50.0), 0.0, 50.0 * sig(50.0), 1000.0};
  const std::vector<double> want_dg = {0.0, sig(-50.0) * (1 - 50.0 * sig(50.0)), 0.5, 1.0, 1.0};
  expect_all_close(out, want_out, tolerance("swiglu", DType::f32), "out");
  expect_all_close(dg, want_dg, tolerance("swiglu", DType::f32), "dgate");
}

TEST(Swiglu, StridedViewsOfAFusedProjection) {
  // gate and up as the two halves of one (T, 2F) matmul output, and a transposed dout.
  Tensor fused = Tensor::randn({40, 2 * 1024}, 64, DType::f32);
  Tensor g = ops::narrow(fused, 1, 0, 1024), u = ops::narrow(fused, 1, 1024, 1024);
  Tensor d = ops::transpose(Tensor::randn({1024, 40}, 65, DType::f32), 0, 1);
  ASSERT_FALSE(g.is_contiguous());
  SwigluRef ref = swiglu_reference(g.to_double_vector(), u.to_double_vector(), d.to_double_vector());
  expect_all_close(ops::swiglu_fwd(g, u).to_double_vector(), ref.out, tolerance("swiglu", DType::f32), "out");
  ops::SwigluGrads grads = ops::swiglu_bwd(d, g, u);
  expect_all_close(grads.dgate.to_double_vector(), ref.dgate, tolerance("swiglu", DType::f32), "dgate");
  expect_all_close(grads.dup.to_double_vector(), ref.dup, tolerance("swiglu", DType::f32), "dup");
}

TEST(Swiglu, BadInputsNameTheOpAndShapes) {
  try {
    ops::swiglu_fwd(Tensor::randn({2, 3}, 1), Tensor::randn({2, 4}, 2));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("swiglu_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("(2, 3)"));
    EXPECT_THAT(e.what(), HasSubstr("(2, 4)"));
  }
  try {
    ops::swiglu_fwd(Tensor::randn({2, 3}, 1), Tensor::randn({2, 3}, 2, DType::bf16));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("swiglu_fwd"));
    EXPECT_THAT(e.what(), HasSubstr("bf16"));
  }
  try {
    ops::swiglu_bwd(Tensor::randn({3, 2}, 1), Tensor::randn({2, 3}, 2), Tensor::randn({2, 3}, 3));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("swiglu_bwd"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 2)"));
  }
}

}  // namespace
}  // namespace shardlab

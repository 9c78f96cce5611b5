// Gradcheck tests register the op they cover, so that registry_test.cc can fail for any
// differentiable op in core/ops.def that has no gradcheck.
//
//   GRADCHECK_TEST(mul, broadcast_noncontiguous) {
//     Tensor a = ..., b = ...;                  // f64 inputs with set_requires_grad(true)
//     expect_gradcheck([](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(in[0], in[1])}; },
//                      {a, b});
//   }
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "autograd/gradcheck.h"
#include "tests/tolerances.h"

namespace shardlab::testing {

std::set<std::string>& gradchecked_ops();

struct GradcheckRegistration {
  explicit GradcheckRegistration(const char* op) { gradchecked_ops().insert(op); }
};

inline void expect_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  GradcheckOptions options;
  options.eps = kGradcheckEps;
  options.atol = kGradcheckAtol;
  options.rtol = kGradcheckRtol;
  GradcheckResult r = gradcheck(fn, inputs, options);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.elements_checked, 0);
}

}  // namespace shardlab::testing

#define GRADCHECK_TEST(op, case_name)                                                                      \
  static ::shardlab::testing::GradcheckRegistration gradcheck_registration_##op##_##case_name(#op);      \
  TEST(Gradcheck_##op, case_name)

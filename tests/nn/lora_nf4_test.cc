// LoRA over QLoRA's 4-bit base (nn::Nf4Linear): the base's NF4 buffers keep their names, the output
// is the dequantized base plus the scaled adapter path (checked against a naive f64 product of the
// dequantized weight), only lora_A/lora_B get gradients, and merging into 4 bits is an error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/nf4.h"
#include "nn/lora.h"
#include "nn/nf4_linear.h"
#include "tests/tolerances.h"

namespace shardlab::nn {
namespace {

using ::testing::HasSubstr;

class Proj : public UnaryModule {
 public:
  explicit Proj(std::shared_ptr<UnaryModule> q) : UnaryModule("Proj") { register_module("q_proj", std::move(q)); }
  Tensor forward(const Tensor& x) override { return unary_child("q_proj")(x); }
};

Tensor param(Module& m, const std::string& name) {
  for (auto& [n, t] : m.state_dict())
    if (n == name) return t;
  ADD_FAILURE() << "no tensor " << name;
  return {};
}

TEST(LoraNf4, AdapterOnTheFourBitBase) {
  const Tensor w = Tensor::randn({8, 64}, 1, DType::f32, 0.0, 0.1);  // (out, in): 8 blocks of 64
  auto base = Nf4Linear::quantize(w, DType::f32);
  Proj m(base);
  LoraSettings s;
  s.r = 2;
  s.alpha = 4;
  s.target_modules = {"q_proj"};
  EXPECT_EQ(apply_lora(m, s), (std::vector<std::string>{"q_proj"}));
  std::vector<std::string> names;
  for (auto& [n, t] : m.state_dict()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"q_proj.weight", "q_proj.weight_absmax", "q_proj.weight_nested_absmax",
                                             "q_proj.weight_nested_offset", "q_proj.lora_A.weight", "q_proj.lora_B.weight"}));
  EXPECT_EQ(param(m, "q_proj.lora_A.weight").dtype(), DType::f32);  // the base's compute dtype
  {
    NoGradGuard no_grad;
    ops::copy_(param(m, "q_proj.lora_B.weight"), Tensor::randn({8, 2}, 5, DType::f32, 0.0, 0.3));
  }

  Tensor x = Tensor::randn({3, 64}, 2);
  Tensor y = m(x);
  const std::vector<double> wq = ops::nf4_dequantize(base->weight(), DType::f64).to_double_vector();
  const std::vector<double> a = param(m, "q_proj.lora_A.weight").to_double_vector();
  const std::vector<double> b = param(m, "q_proj.lora_B.weight").to_double_vector();
  const std::vector<double> xs = x.to_double_vector(), ys = y.to_double_vector();
  const testing::Tolerance tol = testing::tolerance("matmul", DType::f32);
  for (int n = 0; n < 3; ++n) {
    double ax[2] = {0, 0};
    for (int k = 0; k < 2; ++k)
      for (int i = 0; i < 64; ++i) ax[k] += a[k * 64 + i] * xs[n * 64 + i];
    for (int o = 0; o < 8; ++o) {
      double want = 2.0 * (b[o * 2] * ax[0] + b[o * 2 + 1] * ax[1]);
      for (int i = 0; i < 64; ++i) want += wq[o * 64 + i] * xs[n * 64 + i];
      EXPECT_NEAR(ys[n * 8 + o], want, tol.atol + tol.rtol * std::abs(want)) << n << "," << o;
    }
  }

  backward(sum(y));
  EXPECT_TRUE(param(m, "q_proj.lora_A.weight").grad().defined());
  EXPECT_TRUE(param(m, "q_proj.lora_B.weight").grad().defined());
  EXPECT_EQ(m.trainable_parameters().size(), 2u);
  EXPECT_EQ(param(m, "q_proj.weight").tag(), MemTag::parameter);

  auto* lora = lora_modules(m).front().second;
  try {
    lora->merge();
    FAIL() << "merged into a 4-bit base";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("LoraLinear 'q_proj': cannot merge into a Nf4Linear base"));
  }
  EXPECT_THAT([&] {
    try {
      merge_lora(m);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  }(), HasSubstr("q_proj"));
}

}  // namespace
}  // namespace shardlab::nn

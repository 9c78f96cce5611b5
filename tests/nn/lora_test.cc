// LoRA: the forward against a naive f64 computation, B = 0 leaving the base output unchanged,
// gradients only in lora_A/lora_B (and a f64 gradcheck of the whole path), merge/unmerge, PEFT's
// suffix matching of target names, and every error apply_lora raises.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/linear.h"
#include "nn/lora.h"
#include "nn/rms_norm.h"
#include "tests/tolerances.h"

namespace shardlab::nn {
namespace {

using ::testing::HasSubstr;

// attn.{q_proj, k_proj, v_proj} -> norm -> lm_head, projections looked up at call time like Llama's.
class Attn : public UnaryModule {
 public:
  explicit Attn(DType dt) : UnaryModule("Attn") {
    register_module("q_proj", std::make_shared<Linear>(6, 4, false, 1, dt));
    register_module("k_proj", std::make_shared<Linear>(6, 4, true, 2, dt));
    register_module("v_proj", std::make_shared<Linear>(6, 4, false, 3, dt));
  }
  Tensor forward(const Tensor& x) override {
    return unary_child("q_proj")(x) + unary_child("k_proj")(x) + unary_child("v_proj")(x);
  }
};

class Tiny : public UnaryModule {
 public:
  explicit Tiny(DType dt = DType::f32) : UnaryModule("Tiny") {
    register_module("attn", std::make_shared<Attn>(dt));
    register_module("norm", std::make_shared<RMSNorm>(4, 1e-6, dt));
    register_module("lm_head", std::make_shared<Linear>(4, 5, false, 4, dt));
  }
  Tensor forward(const Tensor& x) override { return unary_child("lm_head")(unary_child("norm")(unary_child("attn")(x))); }
};

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Tensor param(Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

void randomise(const Tensor& t, uint64_t seed) {
  NoGradGuard no_grad;
  ops::copy_(t, Tensor::randn(t.shape(), seed, t.dtype(), 0.0, 0.5));
}

LoraSettings settings(std::vector<std::string> targets, int64_t r = 2, double alpha = 6) {
  LoraSettings s;
  s.r = r;
  s.alpha = alpha;
  s.target_modules = std::move(targets);
  s.seed = 11;
  return s;
}

TEST(LoraLinear, ForwardIsBasePlusScaledLowRankPath) {
  // y = W x + b + (alpha / r) B (A x), checked element by element in f64.
  auto base = std::make_shared<Linear>(5, 3, true, 1, DType::f64);
  LoraSettings s = settings({}, 2, 5.0);
  LoraLinear lora(base, 5, 3, s, 7, DType::f64);
  randomise(param(lora, "lora_B.weight"), 3);
  Tensor x = Tensor::randn({4, 5}, 9, DType::f64);
  const std::vector<double> y = lora(x).to_double_vector();
  const std::vector<double> w = param(lora, "weight").to_double_vector(), b = param(lora, "bias").to_double_vector();
  const std::vector<double> a = param(lora, "lora_A.weight").to_double_vector();
  const std::vector<double> bb = param(lora, "lora_B.weight").to_double_vector();
  const std::vector<double> xs = x.to_double_vector();
  for (int n = 0; n < 4; ++n) {
    double ax[2] = {0, 0};
    for (int k = 0; k < 2; ++k)
      for (int i = 0; i < 5; ++i) ax[k] += a[k * 5 + i] * xs[n * 5 + i];
    for (int o = 0; o < 3; ++o) {
      double want = b[o];
      for (int i = 0; i < 5; ++i) want += w[o * 5 + i] * xs[n * 5 + i];
      want += 2.5 * (bb[o * 2 + 0] * ax[0] + bb[o * 2 + 1] * ax[1]);
      EXPECT_NEAR(y[n * 3 + o], want, 1e-12) << n << "," << o;
    }
  }
  EXPECT_DOUBLE_EQ(lora.scaling(), 2.5);
}

TEST(LoraLinear, FreshAdapterLeavesTheOutputUnchangedAndFollowsPeftInit) {
  auto base = std::make_shared<Linear>(16, 8, false, 1);
  LoraLinear lora(base, 16, 8, settings({}, 4), 3, DType::f32);
  Tensor x = Tensor::randn({2, 3, 16}, 5);
  EXPECT_EQ(lora(x).to_double_vector(), (*base)(x).to_double_vector());
  // B is zero; A is U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)).
  for (double v : param(lora, "lora_B.weight").to_double_vector()) EXPECT_EQ(v, 0.0);
  const std::vector<double> a = param(lora, "lora_A.weight").to_double_vector();
  double lo = 1, hi = -1;
  for (double v : a) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GE(lo, -0.25);
  EXPECT_LE(hi, 0.25);
  EXPECT_LT(lo, -0.15);  // 64 draws spread over the range
  EXPECT_GT(hi, 0.15);
}

TEST(LoraLinear, NamesKeepTheBaseTensorsAndAddPeftsAdapterNames) {
  Tiny m;
  apply_lora(m, settings({"k_proj"}, 3));
  std::vector<std::pair<std::string, Shape>> got;
  for (auto& [n, t] : m.named_parameters())
    if (n.starts_with("attn.k_proj")) got.emplace_back(n, t.shape());
  EXPECT_EQ(got, (std::vector<std::pair<std::string, Shape>>{{"attn.k_proj.weight", {4, 6}},
                                                             {"attn.k_proj.bias", {4}},
                                                             {"attn.k_proj.lora_A.weight", {3, 6}},
                                                             {"attn.k_proj.lora_B.weight", {4, 3}}}));
  EXPECT_EQ(param(m, "attn.k_proj.lora_A.weight").tag(), MemTag::parameter);
  EXPECT_EQ(param(m, "attn.k_proj.lora_B.weight").tag(), MemTag::parameter);
}

TEST(LoraLinear, GradientsReachOnlyTheAdapters) {
  Tiny m;
  const std::vector<std::string> wrapped = apply_lora(m, settings({"q_proj", "v_proj"}));
  EXPECT_EQ(wrapped, (std::vector<std::string>{"attn.q_proj", "attn.v_proj"}));
  for (auto& [path, lora] : lora_modules(m)) randomise(param(*lora, "lora_B.weight"), 5);
  backward(sum(m(Tensor::randn({3, 6}, 2))));
  int adapters = 0;
  for (auto& [name, t] : m.named_parameters()) {
    const bool adapter = name.find(".lora_") != std::string::npos;
    EXPECT_EQ(t.requires_grad(), adapter) << name;
    EXPECT_EQ(t.grad().defined(), adapter) << name;
    adapters += adapter;
  }
  EXPECT_EQ(adapters, 4);
  EXPECT_EQ(m.trainable_parameters().size(), 4u);
  EXPECT_EQ(m.num_parameters(true), 2 * (2 * 6 + 4 * 2));
}

TEST(LoraLinear, GradcheckOfTheAdapterPathInF64) {
  auto base = std::make_shared<Linear>(4, 3, true, 1, DType::f64);
  LoraSettings s = settings({}, 2, 3.0);
  s.dropout = 0.0;
  auto lora = std::make_shared<LoraLinear>(base, 4, 3, s, 5, DType::f64);
  Tensor a = param(*lora, "lora_A.weight"), b = param(*lora, "lora_B.weight");
  randomise(b, 8);
  Tensor x = Tensor::randn({2, 4}, 4, DType::f64).set_requires_grad(true);
  // The inputs are the module's own tensors, perturbed in place by gradcheck.
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>&) { return std::vector<Tensor>{(*lora)(x)}; }, {x, a, b},
                                {testing::kGradcheckEps, testing::kGradcheckAtol, testing::kGradcheckRtol});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.elements_checked, 8 + 8 + 6);
}

TEST(LoraLinear, MergeAddsScaledProductAndUnmergeRestores) {
  auto base = std::make_shared<Linear>(6, 5, true, 1);
  LoraLinear lora(base, 6, 5, settings({}, 2, 4.0), 3, DType::f32);
  randomise(param(lora, "lora_B.weight"), 4);
  const std::vector<double> w0 = param(lora, "weight").to_double_vector();
  Tensor x = Tensor::randn({3, 6}, 6);
  const std::vector<double> y_adapter = lora(x).to_double_vector();

  lora.merge();
  EXPECT_TRUE(lora.merged());
  const std::vector<double> a = param(lora, "lora_A.weight").to_double_vector();
  const std::vector<double> b = param(lora, "lora_B.weight").to_double_vector();
  const std::vector<double> w1 = param(lora, "weight").to_double_vector();
  const testing::Tolerance tol = testing::tolerance("matmul", DType::f32);
  for (int o = 0; o < 5; ++o)
    for (int i = 0; i < 6; ++i) {
      const double want = w0[o * 6 + i] + 2.0 * (b[o * 2] * a[i] + b[o * 2 + 1] * a[6 + i]);
      EXPECT_NEAR(w1[o * 6 + i], want, tol.atol + tol.rtol * std::abs(want));
    }
  // The merged weight alone gives the adapter's output.
  const std::vector<double> y_merged = lora(x).to_double_vector();
  for (size_t i = 0; i < y_merged.size(); ++i)
    EXPECT_NEAR(y_merged[i], y_adapter[i], tol.atol + tol.rtol * std::abs(y_adapter[i]));

  lora.unmerge();
  const std::vector<double> w2 = param(lora, "weight").to_double_vector();
  for (size_t i = 0; i < w0.size(); ++i) EXPECT_NEAR(w2[i], w0[i], 1e-6 * (1 + std::abs(w0[i]))) << i;
  EXPECT_THAT(error_of([&] { lora.unmerge(); }), HasSubstr("not merged"));
}

TEST(LoraLinear, MergeLoraPutsPlainLinearsBackUnderTheSameNames) {
  Tiny m;
  std::vector<std::string> before;
  for (auto& [n, t] : m.named_parameters()) before.push_back(n);
  apply_lora(m, settings({"q_proj", "lm_head"}));
  for (auto& [path, lora] : lora_modules(m)) randomise(param(*lora, "lora_B.weight"), 9);
  Tensor x = Tensor::randn({2, 6}, 3);
  const std::vector<double> y = m(x).to_double_vector();
  EXPECT_EQ(merge_lora(m), (std::vector<std::string>{"attn.q_proj", "lm_head"}));
  EXPECT_TRUE(lora_modules(m).empty());
  std::vector<std::string> after;
  for (auto& [n, t] : m.named_parameters()) after.push_back(n);
  EXPECT_EQ(after, before);
  EXPECT_NE(dynamic_cast<Linear*>(m.child_ptr("attn.q_proj").get()), nullptr);
  const std::vector<double> merged = m(x).to_double_vector();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(merged[i], y[i], 1e-4 * (1 + std::abs(y[i])));
}

TEST(LoraLinear, ReplacedTensorsReachTheBase) {
  // A dtype move (to) replaces the wrapper's tensors; the base must compute with the new ones.
  Tiny m;
  apply_lora(m, settings({"q_proj"}));
  m.to(DType::f64);
  Tensor y = m(Tensor::randn({2, 6}, 1, DType::f64));
  EXPECT_EQ(y.dtype(), DType::f64);
}

TEST(LoraLinear, DropoutActsOnTheAdapterPathInTrainingOnly) {
  Tiny m;
  LoraSettings s = settings({"q_proj"});
  s.dropout = 0.5;
  apply_lora(m, s);
  for (auto& [path, lora] : lora_modules(m)) randomise(param(*lora, "lora_B.weight"), 9);
  Tensor x = Tensor::randn({4, 6}, 3);
  m.eval();
  const std::vector<double> eval1 = m(x).to_double_vector(), eval2 = m(x).to_double_vector();
  EXPECT_EQ(eval1, eval2);
  m.train();
  EXPECT_NE(m(x).to_double_vector(), eval1);
  // Wrapping a model in eval mode keeps it there: no dropout sneaks into evaluation.
  Tiny m2;
  m2.eval();
  apply_lora(m2, s);
  EXPECT_FALSE(lora_modules(m2).front().second->child("lora_dropout")->is_training());
}

TEST(LoraTargets, SuffixMatchingAsPeft) {
  Tiny m;
  // A full path, a suffix starting at a dot; "proj" is not a suffix at a dot of anything.
  EXPECT_EQ(apply_lora(m, settings({"attn.k_proj", "v_proj"})), (std::vector<std::string>{"attn.k_proj", "attn.v_proj"}));
  Tiny m2;
  EXPECT_THAT(error_of([&] { apply_lora(m2, settings({"proj"})); }),
              HasSubstr("LoRA: target module 'proj' matches no module of the model"));
}

TEST(LoraTargets, TargetLinearSkipsTheLmHead) {
  Tiny m;
  LoraSettings s = settings({});
  s.target_linear = true;
  EXPECT_EQ(apply_lora(m, s), (std::vector<std::string>{"attn.q_proj", "attn.k_proj", "attn.v_proj"}));
  // Named explicitly, the head can still be adapted.
  Tiny m2;
  s.target_modules = {"lm_head"};
  EXPECT_EQ(apply_lora(m2, s), (std::vector<std::string>{"attn.q_proj", "attn.k_proj", "attn.v_proj", "lm_head"}));
}

TEST(LoraTargets, BadSettingsNameTheCulprit) {
  Tiny m;
  EXPECT_THAT(error_of([&] { apply_lora(m, settings({"w_proj"})); }), HasSubstr("'w_proj' matches no module"));
  EXPECT_THAT(error_of([&] { apply_lora(m, settings({"norm"})); }),
              HasSubstr("target module 'norm' matches 'norm' (RMSNorm), which is not a linear layer"));
  EXPECT_THAT(error_of([&] { apply_lora(m, settings({})); }), HasSubstr("no target modules"));
  EXPECT_THAT(error_of([&] { apply_lora(m, settings({"q_proj"}, 0)); }), HasSubstr("r must be >= 1, got 0"));
  LoraSettings s = settings({"q_proj"});
  s.dropout = 1.0;
  EXPECT_THAT(error_of([&] { apply_lora(m, s); }), HasSubstr("dropout must be in [0, 1)"));
  apply_lora(m, settings({"q_proj"}));
  EXPECT_THAT(error_of([&] { apply_lora(m, settings({"k_proj"})); }),
              HasSubstr("already has LoRA layers (attn.q_proj)"));
}

}  // namespace
}  // namespace shardlab::nn

// Parity with PyTorch: tiny Llamas written by tools/make_llama_goldens.py (GQA/MQA/MHA, tied and
// untied embeddings, llama3 rope scaling on and off) must give the same logits, loss and
// parameter gradients here. f32 throughout; tolerance from tests/tolerances.h ("attention", f32:
// 1e-5 absolute + 1e-4 relative), i.e. ~1e-5 relative on these magnitudes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "autograd/functions.h"
#include "core/safetensors.h"
#include "models/llama_io.h"
#include "tests/tolerances.h"

namespace shardlab::models {
namespace {

namespace fs = std::filesystem;

class LlamaGolden : public ::testing::TestWithParam<std::string> {};

// Largest |got - want| / (atol + rtol |want|); <= 1 means within tolerance.
double worst_ratio(const Tensor& got, const Tensor& want, testing::Tolerance tol, std::string* where) {
  std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double r = std::abs(g[i] - w[i]) / (tol.atol + tol.rtol * std::abs(w[i]));
    if (r > worst) {
      worst = r;
      *where = "element " + std::to_string(i) + ": got " + std::to_string(g[i]) + ", want " + std::to_string(w[i]);
    }
  }
  return worst;
}

TEST_P(LlamaGolden, LogitsLossAndGradientsMatchPyTorch) {
  const fs::path dir = fs::path(SHARDLAB_SOURCE_DIR) / "tests" / "golden" / GetParam();
  auto model = load_llama(dir.string());
  SafetensorsFile expected = SafetensorsFile::open((dir / "expected.safetensors").string());
  ASSERT_EQ(expected.metadata().at("magic"), "shardlab-llama-golden");
  ASSERT_EQ(expected.metadata().at("format_version"), "1");

  const testing::Tolerance tol = testing::tolerance("attention", DType::f32);
  Tensor ids = expected.get("input_ids"), labels = expected.get("labels");
  Tensor logits = model->logits({ids});
  std::string where;
  const double logits_worst = worst_ratio(logits, expected.get("logits"), tol, &where);
  EXPECT_LE(logits_worst, 1.0) << "logits " << where;

  auto [loss_sum, count] = model->loss_sum({ids}, labels);
  Tensor loss = loss_sum * (1.0 / static_cast<double>(count));
  EXPECT_NEAR(loss.item(), expected.get("loss").item(), tol.atol + tol.rtol * expected.get("loss").item());
  backward(loss);
  int checked = 0;
  double grads_worst = 0;
  for (auto& [name, param] : model->named_parameters()) {
    ASSERT_TRUE(expected.contains("grad." + name)) << name;
    ASSERT_TRUE(param.grad().defined()) << name;
    const double r = worst_ratio(param.grad(), expected.get("grad." + name), tol, &where);
    EXPECT_LE(r, 1.0) << name << " " << where;
    grads_worst = std::max(grads_worst, r);
    ++checked;
  }
  // The margin is printed so that drift shows long before it fails.
  std::printf("%s: worst error / tolerance: logits %.3f, gradients %.3f\n", GetParam().c_str(), logits_worst,
              grads_worst);
  EXPECT_GE(checked, 20);
}

INSTANTIATE_TEST_SUITE_P(PyTorchReference, LlamaGolden,
                         ::testing::Values("llama_gqa_untied", "llama_mqa_tied_llama3_rope", "llama_mha_theta500k"));

}  // namespace
}  // namespace shardlab::models

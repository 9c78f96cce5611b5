// Modules: dotted parameter names, ledger tags, train/eval propagation, dtype casts, strict state
// dicts, forward hooks, and the Linear/Embedding/RMSNorm/Dropout layers against hand computations.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/rms_norm.h"

namespace shardlab::nn {
namespace {

using ::testing::HasSubstr;

// A two-level model: block.{proj, norm} plus a head, like a tiny transformer.
class Block : public Module {
 public:
  Block() : Module("Block") {
    proj = register_module("proj", std::make_shared<Linear>(4, 3, true, 1));
    norm = register_module("norm", std::make_shared<RMSNorm>(3, 1e-6));
  }
  std::shared_ptr<Linear> proj;
  std::shared_ptr<RMSNorm> norm;
};

class Model : public Module {
 public:
  Model() : Module("Model") {
    block = register_module("block", std::make_shared<Block>());
    head = register_module("head", std::make_shared<Linear>(3, 2, false, 7));
  }
  std::shared_ptr<Block> block;
  std::shared_ptr<Linear> head;
};

std::vector<std::string> names(const NamedTensors& list) {
  std::vector<std::string> out;
  for (auto& [n, t] : list) out.push_back(n);
  return out;
}

TEST(Module, NamedParametersAreDottedInRegistrationOrderAndTagged) {
  Model m;
  EXPECT_EQ(names(m.named_parameters()),
            (std::vector<std::string>{"block.proj.weight", "block.proj.bias", "block.norm.weight", "head.weight"}));
  EXPECT_EQ(m.num_parameters(), 4 * 3 + 3 + 3 + 3 * 2);
  for (const Tensor& p : m.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_EQ(p.tag(), MemTag::parameter);
  }
  auto modules = m.named_modules();
  ASSERT_EQ(modules.size(), 5u);
  EXPECT_EQ(modules[1].first, "block");
  EXPECT_EQ(modules[2].first, "block.proj");
}

TEST(Module, ReplaceChildSwapsTheModuleAtADottedPath) {
  Model m;
  auto replacement = std::make_shared<Linear>(4, 3, false, 99);
  m.replace_child("block.proj", replacement);
  EXPECT_EQ(m.child_ptr("block.proj"), replacement);
  EXPECT_EQ(names(m.named_parameters()),
            (std::vector<std::string>{"block.proj.weight", "block.norm.weight", "head.weight"}));
  // Forward code that looks the child up at call time sees the new module.
  EXPECT_EQ(&m.child("block")->unary_child("proj"), replacement.get());
  try {
    m.replace_child("block.nope", replacement);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("block.nope"));
  }
  try {
    m.unary_child("block");  // Block is not a one-input module
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a one-input module"));
  }
}

TEST(Module, TrainAndEvalReachEveryChild) {
  Model m;
  m.eval();
  EXPECT_FALSE(m.block->proj->is_training());
  m.train();
  EXPECT_TRUE(m.block->norm->is_training());
}

TEST(Module, ToDtypeCastsParametersAndKeepsThemTrainable) {
  Model m;
  m.to(DType::bf16);
  for (auto& [n, p] : m.named_parameters()) {
    EXPECT_EQ(p.dtype(), DType::bf16) << n;
    EXPECT_TRUE(p.requires_grad()) << n;
  }
}

TEST(Module, StateDictRoundTripAndStrictErrors) {
  Model a, b;
  b.block->proj->replace_tensor("weight", Tensor::zeros({3, 4}).set_requires_grad(true));
  b.load_state_dict(a.state_dict());
  for (size_t i = 0; i < a.parameters().size(); ++i)
    EXPECT_EQ(a.parameters()[i].to_double_vector(), b.parameters()[i].to_double_vector());

  NamedTensors missing = a.state_dict();
  missing.pop_back();
  try {
    b.load_state_dict(missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing keys: head.weight"));
  }
  b.load_state_dict(missing, /*strict=*/false);

  NamedTensors extra = a.state_dict();
  extra.emplace_back("block.extra", Tensor::zeros({1}));
  try {
    b.load_state_dict(extra);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unexpected keys: block.extra"));
  }

  NamedTensors wrong = a.state_dict();
  wrong[0].second = Tensor::zeros({4, 3});
  try {
    b.load_state_dict(wrong, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("block.proj.weight"));
    EXPECT_THAT(e.what(), HasSubstr("(4, 3)"));
    EXPECT_THAT(e.what(), HasSubstr("(3, 4)"));
  }
}

TEST(Module, DuplicateOrDottedNamesAreRejected) {
  struct Bad : Module {
    Bad() : Module("Bad") {
      register_parameter("w", Tensor::zeros({1}));
      EXPECT_THROW(register_parameter("w", Tensor::zeros({1})), Error);
      EXPECT_THROW(register_buffer("a.b", Tensor::zeros({1})), Error);
    }
  };
  Bad bad;
}

TEST(Linear, ComputesXWTransposePlusBias) {
  Linear lin(2, 3, true, 5);
  lin.replace_tensor("weight", Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}).set_requires_grad(true));
  lin.replace_tensor("bias", Tensor::from_vector({10, 20, 30}, {3}).set_requires_grad(true));
  Tensor x = Tensor::from_vector({1, -1, 2, 0.5}, {2, 2});
  // Row 0: [1-2, 3-4, 5-6] + b; row 1: [2+1, 6+2, 10+3] + b.
  EXPECT_EQ(lin(x).to_double_vector(), (std::vector<double>{9, 19, 29, 13, 28, 43}));
  EXPECT_THROW(lin(Tensor::zeros({2, 3})), Error);
}

TEST(Linear, DefaultInitIsBoundedByOneOverSqrtFanIn) {
  Linear lin(64, 32, false, 3);
  const double bound = 1.0 / 8.0;
  double max_abs = 0;
  for (double w : lin.parameters()[0].to_double_vector()) max_abs = std::max(max_abs, std::abs(w));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.9 * bound);  // 2048 uniform draws reach close to the bound
}

TEST(Embedding, LooksUpRowsAndGradientsLandOnThem) {
  Embedding emb(4, 2, 1);
  Tensor ids = Tensor::from_ints({3, 3, 0}, {3});
  Tensor out = emb(ids);
  std::vector<double> table = emb.parameters()[0].to_double_vector();
  EXPECT_EQ(out.to_double_vector(), (std::vector<double>{table[6], table[7], table[6], table[7], table[0], table[1]}));
  backward(sum(out));
  EXPECT_EQ(emb.parameters()[0].grad().to_double_vector(), (std::vector<double>{1, 1, 0, 0, 0, 0, 2, 2}));
}

TEST(RMSNorm, NormalisesRowsToUnitRootMeanSquare) {
  RMSNorm norm(2, 0.0);
  Tensor y = norm(Tensor::from_vector({3, 4}, {1, 2}));
  const double rms = std::sqrt((9.0 + 16.0) / 2.0);
  EXPECT_NEAR(y.to_double_vector()[0], 3 / rms, 1e-6);
  EXPECT_NEAR(y.to_double_vector()[1], 4 / rms, 1e-6);
}

TEST(Dropout, ScalesKeptValuesDropsAboutPAndIsIdentityInEval) {
  Dropout drop(0.25, 11);
  Tensor x = Tensor::ones({10000});
  std::vector<double> y = drop(x).to_double_vector();
  int dropped = 0;
  for (double v : y) {
    if (v == 0.0) ++dropped;
    else EXPECT_NEAR(v, 1.0 / 0.75, 1e-6);
  }
  EXPECT_NEAR(dropped / 10000.0, 0.25, 0.02);  // 4.6 standard errors
  EXPECT_NE(drop(x).to_double_vector(), y);    // a new mask per call
  Dropout replay(0.25, 11);
  EXPECT_EQ(replay(x).to_double_vector(), y);  // same seed and call index, same mask
  drop.eval();
  EXPECT_EQ(drop(x).to_double_vector(), x.to_double_vector());
}

TEST(UnaryModule, ForwardHooksSeeInputAndOutputAndCanBeRemoved) {
  Linear lin(2, 2, false, 1);
  int calls = 0;
  int handle = lin.register_forward_hook([&](const Module& m, const Tensor& in, const Tensor& out) {
    ++calls;
    EXPECT_EQ(m.type_name(), "Linear");
    EXPECT_EQ(in.shape(), (Shape{1, 2}));
    EXPECT_EQ(out.shape(), (Shape{1, 2}));
  });
  lin(Tensor::zeros({1, 2}));
  lin.remove_forward_hook(handle);
  lin(Tensor::zeros({1, 2}));
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace shardlab::nn

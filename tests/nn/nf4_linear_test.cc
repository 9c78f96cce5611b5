// Nf4Linear: forward equals a Linear holding the dequantized weight, buffer names and dtypes in
// the state dict, nothing trainable, ledger bytes under `parameter`, swapping it into a parent with
// replace_child, and the errors for bad weights and inputs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "core/memory_ledger.h"
#include "nn/linear.h"
#include "nn/nf4_linear.h"
#include "tests/compare.h"

namespace shardlab::nn {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::expect_all_close;
using testing::tolerance;

TEST(Nf4LinearModule, ForwardEqualsALinearWithTheDequantizedWeight) {
  Linear full(96, 40, false, 1, DType::f32, 0.02);
  const Tensor w = full.named_parameters()[0].second;
  auto q = Nf4Linear::quantize(w, DType::f32);
  EXPECT_EQ(q->in_features(), 96);
  EXPECT_EQ(q->out_features(), 40);
  full.replace_tensor("weight", ops::nf4_dequantize(q->weight(), DType::f32));
  const Tensor x = Tensor::randn({2, 3, 96}, 2);
  expect_all_close((*q)(x).to_double_vector(), full(x).to_double_vector(), tolerance("matmul", DType::f32), "forward");
}

TEST(Nf4LinearModule, Bf16ComputeDtypeGivesBf16Outputs) {
  auto q = Nf4Linear::quantize(Tensor::randn({16, 64}, 3, DType::bf16), DType::bf16);
  const Tensor x = Tensor::randn({4, 64}, 4, DType::bf16);
  const Tensor y = (*q)(x);
  EXPECT_EQ(y.dtype(), DType::bf16);
  const Tensor want = ops::matmul(x, ops::transpose(ops::nf4_dequantize(q->weight(), DType::bf16), 0, 1));
  expect_all_close(y.to_double_vector(), want.to_double_vector(), tolerance("matmul", DType::bf16), "bf16");
}

TEST(Nf4LinearModule, BuffersAreTheQuantStateAndNothingIsTrainable) {
  auto q = Nf4Linear::quantize(Tensor::randn({300, 256}, 5), DType::f32);  // 76800 elements, 1200 blocks
  const NamedTensors state = q->state_dict();
  ASSERT_EQ(state.size(), 4u);
  EXPECT_EQ(state[0].first, "weight");
  EXPECT_EQ(state[0].second.dtype(), DType::u8);
  EXPECT_EQ(state[0].second.shape(), (Shape{38400}));
  EXPECT_EQ(state[1].first, "weight_absmax");
  EXPECT_EQ(state[1].second.dtype(), DType::u8);
  EXPECT_EQ(state[1].second.shape(), (Shape{1200}));
  EXPECT_EQ(state[2].first, "weight_nested_absmax");
  EXPECT_EQ(state[2].second.dtype(), DType::f32);
  EXPECT_EQ(state[2].second.shape(), (Shape{5}));
  EXPECT_EQ(state[3].first, "weight_nested_offset");
  EXPECT_EQ(state[3].second.shape(), (Shape{1}));
  EXPECT_TRUE(q->parameters().empty());
  EXPECT_TRUE(q->trainable_parameters().empty());
  for (const auto& [name, t] : state) EXPECT_EQ(t.tag(), MemTag::parameter) << name;
}

TEST(Nf4LinearModule, LedgerCountsAboutHalfAByteAndConstantsPerWeight) {
  const Tensor w = Tensor::randn({512, 512}, 6);
  MemoryLedger& ledger = MemoryLedger::instance();
  const int64_t before = ledger.snapshot(Device::cpu())[MemTag::parameter].live;
  auto q = Nf4Linear::quantize(w, DType::f32);
  const int64_t bytes = ledger.snapshot(Device::cpu())[MemTag::parameter].live - before;
  const int64_t n = 512 * 512;
  EXPECT_EQ(bytes, n / 2 + n / 64 + 4 * (n / 64 / 256) + 4);  // 0.516 bytes per weight
  EXPECT_EQ(bytes, q->weight().nbytes());
}

TEST(Nf4LinearModule, ReplacesAChildAndTakesItsNames) {
  class Parent : public UnaryModule {
   public:
    Parent() : UnaryModule("Parent") { register_module("proj", std::make_shared<Linear>(64, 8, false, 7)); }
    Tensor forward(const Tensor& x) override { return unary_child("proj")(x); }
  };
  Parent parent;
  const Tensor w = parent.named_parameters()[0].second;
  parent.replace_child("proj", Nf4Linear::quantize(w, DType::f32));
  std::vector<std::string> names;
  for (const auto& [name, t] : parent.state_dict()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"proj.weight", "proj.weight_absmax", "proj.weight_nested_absmax",
                                             "proj.weight_nested_offset"}));
  EXPECT_EQ(parent(Tensor::randn({2, 64}, 8)).shape(), (Shape{2, 8}));
}

TEST(Nf4LinearModule, LoadStateDictReplacesTheWeight) {
  auto a = Nf4Linear::quantize(Tensor::randn({8, 64}, 9), DType::f32);
  auto b = Nf4Linear::quantize(Tensor::randn({8, 64}, 10), DType::f32);
  b->load_state_dict(a->state_dict());
  const Tensor x = Tensor::randn({3, 64}, 11);
  EXPECT_EQ((*b)(x).to_double_vector(), (*a)(x).to_double_vector());
}

TEST(Nf4LinearModule, BadWeightsAndInputsAreErrors) {
  try {
    Nf4Linear::quantize(Tensor::randn({64}, 12), DType::f32);
    FAIL() << "1-D weight accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("Nf4Linear"), HasSubstr("2-D"), HasSubstr("(64")));
  }
  try {
    Nf4Linear::quantize(Tensor::randn({4, 64}, 13), DType::i32);
    FAIL() << "integer compute dtype accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("Nf4Linear"), HasSubstr("i32"), HasSubstr("(4, 64)")));
  }
  auto q = Nf4Linear::quantize(Tensor::randn({4, 64}, 14), DType::bf16);
  try {
    (*q)(Tensor::randn({2, 64}, 15));
    FAIL() << "f32 input to a bf16 Nf4Linear accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("Nf4Linear"), HasSubstr("f32"), HasSubstr("bf16"), HasSubstr("(2, 64)")));
  }
}

}  // namespace
}  // namespace shardlab::nn

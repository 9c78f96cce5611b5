// CUDA element-wise ops against the CPU kernels on the same inputs: arithmetic, math and
// activations in every float dtype, integer arithmetic and comparisons (exact), where, the in-place
// add_/mul_, over contiguous, transposed, broadcast, scalar and unaligned layouts; plus the
// argument errors. Tolerances come from tests/tolerances.h ("elementwise"). Skips without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab::testing {
namespace {

using ::testing::HasSubstr;

const DType kFloatDTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};
const DType kIntDTypes[] = {DType::i32, DType::i64, DType::u8, DType::i8};

using View = std::function<Tensor(const Tensor&)>;
using Gen = std::function<Tensor(const Shape&, uint64_t, DType)>;
using UnaryFn = std::function<Tensor(const Tensor&)>;
using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;

Tensor same(const Tensor& t) { return t; }
Tensor transposed(const Tensor& t) { return ops::transpose(t, 0, 1); }
Tensor drop_first(const Tensor& t) { return ops::narrow(t, 0, 1, t.size(0) - 1); }  // offset 1: unaligned

Tensor normal(const Shape& s, uint64_t seed, DType dt) { return Tensor::randn(s, seed, dt); }
Tensor positive(const Shape& s, uint64_t seed, DType dt) { return Tensor::rand(s, seed, dt, 0.25, 3.0); }
// Small integers (many ties for the comparisons); non-negative so u8 holds them.
Tensor small_ints(const Shape& s, uint64_t seed, DType dt) {
  return ops::to_dtype(Tensor::rand(s, seed, DType::i32, 0.0, 6.0), dt);
}
// Integers that overflow i8/u8 products (wrap-around must match the CPU).
Tensor wide_ints(const Shape& s, uint64_t seed, DType dt) {
  return ops::to_dtype(Tensor::rand(s, seed, DType::i32, 0.0, 120.0), dt);
}

// Operand layouts for two-input ops: each operand is a view of a base tensor, built alike on the
// CPU and on the GPU. Odd sizes so no layout is a multiple of a block or vector width.
struct BinaryLayout {
  const char* name;
  Shape a_shape;
  View a_view;
  Shape b_shape;
  View b_view;
};

const std::vector<BinaryLayout>& binary_layouts() {
  static const std::vector<BinaryLayout> layouts = {
      {"contiguous", {37, 129}, same, {37, 129}, same},
      {"a transposed", {129, 37}, transposed, {37, 129}, same},
      {"both transposed", {129, 37}, transposed, {129, 37}, transposed},
      {"column x row broadcast", {37, 1}, same, {1, 129}, same},
      {"bias broadcast", {3, 37, 129}, same, {129}, same},
      {"scalar b", {37, 129}, same, {}, same},
      {"scalar a", {}, same, {37, 129}, same},
      {"unaligned a", {4700}, drop_first, {4699}, same},
      {"permuted 4-d a", {5, 7, 6, 8}, [](const Tensor& t) { return ops::permute(t, {0, 2, 1, 3}); }, {5, 6, 7, 8}, same},
  };
  return layouts;
}

void expect_binary_matches(const std::string& op, const BinaryFn& f, DType dt, const Gen& gen_a, const Gen& gen_b) {
  for (const BinaryLayout& l : binary_layouts()) {
    const Tensor a = gen_a(l.a_shape, 1, dt), b = gen_b(l.b_shape, 2, dt);
    const Tensor want = f(l.a_view(a), l.b_view(b));
    const Tensor got = f(l.a_view(on_cuda(a)), l.b_view(on_cuda(b)));
    expect_matches_cpu(got, want, "elementwise", op + " " + dtype_name(dt) + " " + l.name);
  }
}

void expect_unary_matches(const std::string& op, const UnaryFn& f, DType dt, const Gen& gen) {
  struct Layout {
    const char* name;
    Shape shape;
    View view;
  };
  const Layout layouts[] = {{"contiguous", {37, 129}, same},
                            {"transposed", {129, 37}, transposed},
                            {"unaligned", {4701}, drop_first},
                            {"scalar", {}, same},
                            {"empty", {0, 7}, same}};
  for (const Layout& l : layouts) {
    const Tensor x = gen(l.shape, 3, dt);
    expect_matches_cpu(f(l.view(on_cuda(x))), f(l.view(x)), "elementwise", op + " " + dtype_name(dt) + " " + l.name);
  }
}

TEST(CudaElementwise, FloatArithmeticMatchesTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : kFloatDTypes) {
    expect_binary_matches("add", ops::add, dt, normal, normal);
    expect_binary_matches("sub", ops::sub, dt, normal, normal);
    expect_binary_matches("mul", ops::mul, dt, normal, normal);
    expect_binary_matches("div", ops::div, dt, normal, positive);
    expect_binary_matches("pow", ops::pow, dt, positive, normal);
  }
}

TEST(CudaElementwise, IntegerArithmeticIsExact) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : kIntDTypes) {
    expect_binary_matches("add", ops::add, dt, wide_ints, wide_ints);
    expect_binary_matches("sub", ops::sub, dt, wide_ints, wide_ints);
    expect_binary_matches("mul", ops::mul, dt, wide_ints, wide_ints);
    expect_unary_matches("neg", ops::neg, dt, wide_ints);
    expect_unary_matches("add_scalar", [](const Tensor& t) { return ops::add_scalar(t, 3.0); }, dt, wide_ints);
    // Non-negative integral scalars: a negative one is undefined for u8 on the CPU (double -> u8).
    expect_unary_matches("mul_scalar", [](const Tensor& t) { return ops::mul_scalar(t, 3.0); }, dt, wide_ints);
  }
}

TEST(CudaElementwise, UnaryMathMatchesTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const Gen wide = [](const Shape& s, uint64_t seed, DType dt) { return Tensor::randn(s, seed, dt, 0.0, 3.0); };
  for (DType dt : kFloatDTypes) {
    expect_unary_matches("neg", ops::neg, dt, normal);
    expect_unary_matches("exp", ops::exp, dt, normal);
    expect_unary_matches("log", ops::log, dt, positive);
    expect_unary_matches("sqrt", ops::sqrt, dt, positive);
    expect_unary_matches("rsqrt", ops::rsqrt, dt, positive);
    expect_unary_matches("tanh", ops::tanh, dt, wide);
    expect_unary_matches("sigmoid", ops::sigmoid, dt, wide);
    expect_unary_matches("silu", ops::silu, dt, wide);
    expect_unary_matches("gelu", ops::gelu, dt, wide);
    expect_unary_matches("add_scalar", [](const Tensor& t) { return ops::add_scalar(t, 0.25); }, dt, normal);
    expect_unary_matches("mul_scalar", [](const Tensor& t) { return ops::mul_scalar(t, -1.5); }, dt, normal);
    for (double e : {1.0, 2.0, 3.0, 0.5, -0.5, -1.0, 1.7})
      expect_unary_matches("pow_scalar " + std::to_string(e), [e](const Tensor& t) { return ops::pow_scalar(t, e); },
                           dt, positive);
  }
}

TEST(CudaElementwise, ActivationBackwardsMatchTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const Gen wide = [](const Shape& s, uint64_t seed, DType dt) { return Tensor::randn(s, seed, dt, 0.0, 3.0); };
  for (DType dt : kFloatDTypes) {
    expect_binary_matches("silu_backward", ops::silu_backward, dt, normal, wide);
    expect_binary_matches("gelu_backward", ops::gelu_backward, dt, normal, wide);
  }
}

TEST(CudaElementwise, ComparisonsGiveExactU8Masks) {
  SL_SKIP_WITHOUT_CUDA();
  const std::vector<std::pair<std::string, BinaryFn>> cmps = {
      {"eq", ops::eq}, {"ne", ops::ne}, {"lt", ops::lt}, {"le", ops::le}, {"gt", ops::gt}, {"ge", ops::ge}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::i8})
    for (const auto& [name, f] : cmps) expect_binary_matches(name, f, dt, small_ints, small_ints);
  // Rounded normals too, where 16-bit values compare in f32.
  expect_binary_matches("lt", ops::lt, DType::bf16, normal, normal);
  const Tensor mask = ops::gt(on_cuda(Tensor::randn({5}, 4)), on_cuda(Tensor::zeros({5})));
  EXPECT_EQ(mask.dtype(), DType::u8);
}

TEST(CudaElementwise, WhereBroadcastsAllThreeOperands) {
  SL_SKIP_WITHOUT_CUDA();
  struct Case {
    const char* name;
    Shape cond, a, b;
  };
  const Case cases[] = {{"same shape", {37, 129}, {37, 129}, {37, 129}},
                        {"column cond", {37, 1}, {37, 129}, {129}},
                        {"scalar b", {1, 129}, {37, 1}, {}},
                        {"3-d", {2, 1, 129}, {37, 1}, {2, 37, 129}}};
  // f64, f32, bf16, u8: the 8-, 4-, 2- and 1-byte selects; i64 shares f64's.
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::u8, DType::i64}) {
    for (const Case& c : cases) {
      const Tensor cond = ops::gt(Tensor::randn(c.cond, 5), Tensor::zeros(c.cond));
      const Tensor a = small_ints(c.a, 6, dt), b = small_ints(c.b, 7, dt);
      expect_matches_cpu(ops::where(on_cuda(cond), on_cuda(a), on_cuda(b)), ops::where(cond, a, b), "elementwise",
                         std::string("where ") + dtype_name(dt) + " " + c.name);
    }
    // A transposed condition and operand.
    const Tensor cond = ops::gt(Tensor::randn({129, 37}, 8), Tensor::zeros({129, 37}));
    const Tensor a = small_ints({129, 37}, 9, dt), b = small_ints({37, 129}, 10, dt);
    expect_matches_cpu(ops::where(transposed(on_cuda(cond)), transposed(on_cuda(a)), on_cuda(b)),
                       ops::where(transposed(cond), transposed(a), b), "elementwise",
                       std::string("where transposed ") + dtype_name(dt));
  }
}

TEST(CudaElementwise, InPlaceAddAndMulMatchTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::u8}) {
    const Gen gen = is_floating(dt) ? Gen(normal) : Gen(wide_ints);
    // Integers take non-negative alphas: double -> u8 of a negative value is undefined on the CPU.
    const std::vector<double> alphas = is_floating(dt) ? std::vector<double>{1.0, -0.5, 3.0} : std::vector<double>{1.0, 3.0};
    for (double alpha : alphas) {
      const std::string what = std::string(dtype_name(dt)) + " alpha " + std::to_string(alpha);
      const Tensor base = gen({129, 37}, 11, dt), full = gen({37, 129}, 12, dt), row = gen({129}, 13, dt);
      Tensor cpu = ops::clone(base), gpu = on_cuda(base);
      const uint64_t version = gpu.version();
      // Contiguous dst, broadcast src; transposed dst, contiguous src; transposed dst, transposed src.
      ops::add_(cpu, ops::unsqueeze(ops::narrow(row, 0, 0, 37), 0), alpha);
      ops::add_(gpu, ops::unsqueeze(ops::narrow(on_cuda(row), 0, 0, 37), 0), alpha);
      ops::add_(transposed(cpu), full, alpha);
      ops::add_(transposed(gpu), on_cuda(full), alpha);
      ops::add_(transposed(cpu), transposed(base), alpha);
      ops::add_(transposed(gpu), transposed(on_cuda(base)), alpha);
      EXPECT_GT(gpu.version(), version) << what;
      expect_matches_cpu(gpu, cpu, "elementwise", "add_ " + what);
    }
    Tensor cpu = gen({37, 129}, 14, dt), gpu = on_cuda(cpu);
    const double s = is_floating(dt) ? 2.5 : 3.0, s2 = is_floating(dt) ? -0.75 : 2.0;
    ops::mul_(cpu, s);
    ops::mul_(gpu, s);
    ops::mul_(transposed(ops::narrow(cpu, 1, 1, 100)), s2);  // strided, unaligned view
    ops::mul_(transposed(ops::narrow(gpu, 1, 1, 100)), s2);
    expect_matches_cpu(gpu, cpu, "elementwise", std::string("mul_ ") + dtype_name(dt));
  }
}

TEST(CudaElementwise, LargeTensorsUseTheGridStrideLoop) {
  SL_SKIP_WITHOUT_CUDA();
  // 5M + 3 f32: more vector steps than one capped grid covers, and a tail.
  const Tensor a = Tensor::randn({5 * 1024 * 1024 + 3}, 15), b = Tensor::randn({5 * 1024 * 1024 + 3}, 16);
  expect_matches_cpu(ops::add(on_cuda(a), on_cuda(b)), ops::add(a, b), "elementwise", "add 5M f32");
  // 2.1M transposed bf16: the strided kernel's grid-stride loop.
  const Tensor x = Tensor::randn({2048, 1031}, 17, DType::bf16);
  expect_matches_cpu(ops::gelu(transposed(on_cuda(x))), ops::gelu(transposed(x)), "elementwise",
                     "gelu transposed 2.1M bf16");
}

TEST(CudaElementwise, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor g = on_cuda(Tensor::ones({4, 5}));
  EXPECT_THAT(error_of([&] { ops::add(g, Tensor::ones({4, 5})); }), HasSubstr("add: device mismatch"));
  EXPECT_THAT(error_of([&] { ops::mul(g, on_cuda(Tensor::ones({4, 5}, DType::bf16))); }),
              HasSubstr("mul: dtype mismatch"));
  EXPECT_THAT(error_of([&] { ops::sub(g, on_cuda(Tensor::ones({3}))); }), HasSubstr("sub: shapes (4, 5) and (3,)"));
  EXPECT_THAT(error_of([&] { ops::div(on_cuda(Tensor::ones({2}, DType::i32)), on_cuda(Tensor::ones({2}, DType::i32))); }),
              HasSubstr("div: needs a floating tensor"));
  EXPECT_THAT(error_of([&] { ops::exp(on_cuda(Tensor::ones({2}, DType::i64))); }),
              HasSubstr("exp: needs a floating tensor"));
  EXPECT_THAT(error_of([&] { ops::mul_scalar(on_cuda(Tensor::ones({2}, DType::i32)), 0.5); }),
              HasSubstr("mul_scalar: scalar 0.5 is not an integer"));
  EXPECT_THAT(error_of([&] { ops::add_(g, on_cuda(Tensor::ones({2, 4, 5}))); }),
              HasSubstr("add_: source of shape (2, 4, 5) cannot be broadcast to destination shape (4, 5)"));
  EXPECT_THAT(error_of([&] { ops::where(on_cuda(Tensor::ones({4, 5})), g, g); }),
              HasSubstr("where: condition must be a u8 mask"));
  // A failed in-place op leaves the version alone.
  const uint64_t version = g.version();
  error_of([&] { ops::add_(g, on_cuda(Tensor::ones({4, 5}, DType::f64))); });
  EXPECT_EQ(g.version(), version);
}

}  // namespace
}  // namespace shardlab::testing

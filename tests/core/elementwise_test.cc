// Element-wise kernels against a naive f64 reference written here (broadcast by explicit index
// arithmetic) and hand-computed values: every op on the four float dtypes, broadcasting,
// non-contiguous inputs, integer dtypes, in-place version bumps and bad-input errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

const DType kFloatDTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

// Reference broadcasting: the value of `vals` (row-major, shape `in`) at output index `idx` of `out`.
double at_broadcast(const std::vector<double>& vals, const Shape& in, const Shape& out, int64_t linear) {
  const size_t lead = out.size() - in.size();
  int64_t off = 0, stride = 1;
  for (int64_t d = static_cast<int64_t>(out.size()) - 1; d >= 0; --d) {
    const int64_t i = linear % out[d];
    linear /= out[d];
    if (d >= static_cast<int64_t>(lead)) {
      const int64_t size = in[d - lead];
      off += (size == 1 ? 0 : i) * stride;
      stride *= size;
    }
  }
  return vals[off];
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

void expect_close(const Tensor& got, const std::vector<double>& want, DType dtype, const std::string& what) {
  const auto tol = tolerance("elementwise", dtype);
  std::vector<double> g = got.to_double_vector();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], want[i], tol.atol + tol.rtol * std::abs(want[i]))
        << what << " dtype " << dtype_name(dtype) << " element " << i;
}

// Random input in `dtype`; its (already rounded) values are what the reference sees.
Tensor input(const Shape& shape, uint64_t seed, DType dtype, double low, double high) {
  return ops::to_dtype(Tensor::rand(shape, seed, DType::f64, low, high), dtype);
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double low, high;
};

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", ops::neg, [](double x) { return -x; }, -3, 3},
      {"exp", ops::exp, [](double x) { return std::exp(x); }, -4, 4},
      {"log", ops::log, [](double x) { return std::log(x); }, 0.05, 20},
      {"sqrt", ops::sqrt, [](double x) { return std::sqrt(x); }, 0.01, 50},
      {"rsqrt", ops::rsqrt, [](double x) { return 1.0 / std::sqrt(x); }, 0.05, 50},
      {"tanh", ops::tanh, [](double x) { return std::tanh(x); }, -5, 5},
      {"sigmoid", ops::sigmoid, sigmoid_ref, -10, 10},
      {"silu", ops::silu, [](double x) { return x * sigmoid_ref(x); }, -8, 8},
      {"gelu", ops::gelu, gelu_ref, -5, 5},
      {"add_scalar", [](const Tensor& t) { return ops::add_scalar(t, 2.5); }, [](double x) { return x + 2.5; }, -3, 3},
      {"mul_scalar", [](const Tensor& t) { return ops::mul_scalar(t, -1.5); }, [](double x) { return x * -1.5; }, -3, 3},
      {"pow_scalar 2", [](const Tensor& t) { return ops::pow_scalar(t, 2.0); }, [](double x) { return x * x; }, -3, 3},
      {"pow_scalar 3", [](const Tensor& t) { return ops::pow_scalar(t, 3.0); }, [](double x) { return x * x * x; }, -2, 2},
      {"pow_scalar 0.5", [](const Tensor& t) { return ops::pow_scalar(t, 0.5); }, [](double x) { return std::sqrt(x); }, 0.1, 9},
      {"pow_scalar -0.5", [](const Tensor& t) { return ops::pow_scalar(t, -0.5); }, [](double x) { return 1 / std::sqrt(x); }, 0.1, 9},
      {"pow_scalar -1", [](const Tensor& t) { return ops::pow_scalar(t, -1.0); }, [](double x) { return 1 / x; }, 0.2, 9},
      {"pow_scalar 1", [](const Tensor& t) { return ops::pow_scalar(t, 1.0); }, [](double x) { return x; }, -3, 3},
      {"pow_scalar 1.7", [](const Tensor& t) { return ops::pow_scalar(t, 1.7); }, [](double x) { return std::pow(x, 1.7); }, 0.1, 4},
  };
}

TEST(Elementwise, UnaryOpsMatchReferenceOnEveryFloatDtype) {
  for (const UnaryCase& c : unary_cases())
    for (DType dt : kFloatDTypes) {
      // 3 x 700 crosses the Eigen block size and, contiguous, becomes one flat loop.
      Tensor x = input({3, 700}, 11, dt, c.low, c.high);
      Tensor y = c.op(x);
      EXPECT_EQ(y.dtype(), dt) << c.name;
      EXPECT_EQ(y.shape(), x.shape()) << c.name;
      std::vector<double> want;
      for (double v : x.to_double_vector()) want.push_back(c.ref(v));
      expect_close(y, want, dt, c.name);
    }
}

TEST(Elementwise, UnaryOpsOnNonContiguousInputs) {
  for (const UnaryCase& c : unary_cases())
    for (DType dt : kFloatDTypes) {
      Tensor base = input({5, 300}, 12, dt, c.low, c.high);
      Tensor x = ops::slice(ops::transpose(base, 0, 1), 0, 1, 300, 3);  // (100, 5), strides (3, 300)
      ASSERT_FALSE(x.is_contiguous());
      std::vector<double> want;
      for (double v : x.to_double_vector()) want.push_back(c.ref(v));
      expect_close(c.op(x), want, dt, std::string(c.name) + " non-contiguous");
    }
}

TEST(Elementwise, LargeInputsTakeTheParallelPath) {
  // Above cpu::kParallelGrain elements the loop is split across threads; the result must not change.
  Tensor x = input({300, 257}, 13, DType::f32, -3, 3);
  std::vector<double> xv = x.to_double_vector(), want;
  for (double v : xv) want.push_back(gelu_ref(v));
  expect_close(ops::gelu(x), want, DType::f32, "gelu large");
  Tensor y = input({257}, 14, DType::f32, -3, 3);
  std::vector<double> yv = y.to_double_vector();
  want.clear();
  for (size_t i = 0; i < xv.size(); ++i) want.push_back(xv[i] * yv[i % 257]);
  expect_close(ops::mul(x, y), want, DType::f32, "mul large broadcast");
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
  double low, high;  // for both operands
};

std::vector<BinaryCase> binary_cases() {
  return {
      {"add", ops::add, [](double a, double b) { return a + b; }, -3, 3},
      {"sub", ops::sub, [](double a, double b) { return a - b; }, -3, 3},
      {"mul", ops::mul, [](double a, double b) { return a * b; }, -3, 3},
      {"div", ops::div, [](double a, double b) { return a / b; }, 0.3, 3},
      {"pow", ops::pow, [](double a, double b) { return std::pow(a, b); }, 0.2, 2.5},
      {"silu_backward", ops::silu_backward,
       [](double g, double x) {
         const double s = sigmoid_ref(x);
         return g * s * (1 + x * (1 - s));
       },
       -4, 4},
      {"gelu_backward", ops::gelu_backward,
       [](double g, double x) {
         return g * (0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi));
       },
       -4, 4},
  };
}

void check_binary(const BinaryCase& c, const Tensor& a, const Tensor& b, const Shape& out_shape, DType dt,
                  const std::string& what) {
  Tensor y = c.op(a, b);
  ASSERT_EQ(y.shape(), out_shape) << c.name << " " << what;
  EXPECT_EQ(y.dtype(), dt);
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector(), want;
  for (int64_t i = 0; i < numel_of(out_shape); ++i)
    want.push_back(c.ref(at_broadcast(av, a.shape(), out_shape, i), at_broadcast(bv, b.shape(), out_shape, i)));
  expect_close(y, want, dt, std::string(c.name) + " " + what);
}

TEST(Elementwise, BinaryOpsMatchReferenceWithBroadcasting) {
  for (const BinaryCase& c : binary_cases())
    for (DType dt : kFloatDTypes) {
      Tensor a = input({3, 400}, 21, dt, c.low, c.high), b = input({3, 400}, 22, dt, c.low, c.high);
      check_binary(c, a, b, {3, 400}, dt, "same shape");
      Tensor p = input({2, 1, 3}, 23, dt, c.low, c.high), q = input({4, 1}, 24, dt, c.low, c.high);
      check_binary(c, p, q, {2, 4, 3}, dt, "(2,1,3) with (4,1)");
      check_binary(c, q, p, {2, 4, 3}, dt, "(4,1) with (2,1,3)");
      Tensor row = input({300}, 25, dt, c.low, c.high), mat = input({5, 300}, 26, dt, c.low, c.high);
      check_binary(c, mat, row, {5, 300}, dt, "row broadcast");
      check_binary(c, row, mat, {5, 300}, dt, "row broadcast, left");
      Tensor s = input({}, 27, dt, c.low, c.high);
      check_binary(c, mat, s, {5, 300}, dt, "0-d scalar");
    }
}

TEST(Elementwise, BinaryOpsOnNonContiguousInputs) {
  for (const BinaryCase& c : binary_cases())
    for (DType dt : kFloatDTypes) {
      Tensor a = ops::transpose(input({6, 4}, 31, dt, c.low, c.high), 0, 1);           // (4, 6)
      Tensor b = ops::slice(input({4, 12}, 32, dt, c.low, c.high), 1, 0, 12, 2);        // (4, 6), step 2
      ASSERT_FALSE(a.is_contiguous());
      ASSERT_FALSE(b.is_contiguous());
      check_binary(c, a, b, {4, 6}, dt, "transposed with sliced");
      Tensor col = ops::slice(input({8, 1}, 33, dt, c.low, c.high), 0, 0, 8, 2);        // (4, 1)
      check_binary(c, a, col, {4, 6}, dt, "transposed with strided column");
    }
}

TEST(Elementwise, HandComputedValues) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector({10, 20, 30}, {3});
  EXPECT_EQ(ops::add(a, b).to_double_vector(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(ops::sub(a, b).to_double_vector(), (std::vector<double>{-9, -18, -27, -6, -15, -24}));
  EXPECT_EQ(ops::mul(a, b).to_double_vector(), (std::vector<double>{10, 40, 90, 40, 100, 180}));
  EXPECT_EQ(ops::div(b, Tensor::from_vector({2}, {1})).to_double_vector(), (std::vector<double>{5, 10, 15}));
  EXPECT_EQ(ops::pow(Tensor::from_vector({2, 3}, {2}), Tensor::from_vector({3, 2}, {2})).to_double_vector(),
            (std::vector<double>{8, 9}));
  Tensor z = Tensor::from_vector({0}, {1});
  EXPECT_DOUBLE_EQ(ops::exp(z).item(), 1.0);
  EXPECT_DOUBLE_EQ(ops::sigmoid(z).item(), 0.5);
  EXPECT_DOUBLE_EQ(ops::tanh(z).item(), 0.0);
  EXPECT_DOUBLE_EQ(ops::silu(z).item(), 0.0);
  EXPECT_DOUBLE_EQ(ops::gelu(z).item(), 0.0);
  EXPECT_DOUBLE_EQ(ops::sqrt(Tensor::from_vector({16}, {1})).item(), 4.0);
  EXPECT_DOUBLE_EQ(ops::rsqrt(Tensor::from_vector({4}, {1})).item(), 0.5);
  EXPECT_DOUBLE_EQ(ops::log(Tensor::from_vector({1}, {1})).item(), 0.0);
}

TEST(Elementwise, IntegerArithmeticAndComparisons) {
  for (DType dt : {DType::i32, DType::i64, DType::i8, DType::u8}) {
    Tensor a = Tensor::from_ints({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    Tensor b = Tensor::from_ints({3, 2, 1}, {3}, dt);
    Tensor s = ops::add(a, b);
    EXPECT_EQ(s.dtype(), dt);
    EXPECT_EQ(s.to_int_vector(), (std::vector<int64_t>{4, 4, 4, 7, 7, 7}));
    EXPECT_EQ(ops::mul(a, b).to_int_vector(), (std::vector<int64_t>{3, 4, 3, 12, 10, 6}));
    if (dt != DType::u8)  // u8 wraps around below zero
      EXPECT_EQ(ops::sub(a, b).to_int_vector(), (std::vector<int64_t>{-2, 0, 2, 1, 3, 5}));
    else
      EXPECT_EQ(ops::sub(a, b).to_int_vector(), (std::vector<int64_t>{254, 0, 2, 1, 3, 5}));
    EXPECT_EQ(ops::add_scalar(a, 2).to_int_vector(), (std::vector<int64_t>{3, 4, 5, 6, 7, 8}));
    EXPECT_EQ(ops::mul_scalar(a, 3).to_int_vector(), (std::vector<int64_t>{3, 6, 9, 12, 15, 18}));
    EXPECT_EQ(ops::eq(a, b).to_int_vector(), (std::vector<int64_t>{0, 1, 0, 0, 0, 0}));
    EXPECT_EQ(ops::lt(a, b).to_int_vector(), (std::vector<int64_t>{1, 0, 0, 0, 0, 0}));
    EXPECT_EQ(ops::ge(a, b).to_int_vector(), (std::vector<int64_t>{0, 1, 1, 1, 1, 1}));
  }
  // i64 beyond 2^53 stays exact (no detour through double); read raw, as to_int_vector goes via double.
  const int64_t big = (int64_t{1} << 60) + 1;
  Tensor x = Tensor::from_ints({big}, {1});
  EXPECT_EQ(ops::add(x, Tensor::from_ints({1}, {1})).data<int64_t>()[0], big + 1);
  EXPECT_EQ(ops::mul_scalar(x, 3).data<int64_t>()[0], 3 * big);
  EXPECT_EQ(ops::add_scalar(x, 2).data<int64_t>()[0], big + 2);
}

TEST(Elementwise, ComparisonsGiveU8MasksOnEveryDtype) {
  for (DType dt : kFloatDTypes) {
    Tensor a = ops::to_dtype(Tensor::from_vector({1, 2, 3, 2, 2, 2}, {2, 3}), dt);
    Tensor b = ops::to_dtype(Tensor::from_vector({2, 2, 2}, {3}), dt);
    Tensor m = ops::eq(a, b);
    EXPECT_EQ(m.dtype(), DType::u8);
    EXPECT_EQ(m.shape(), (Shape{2, 3}));
    EXPECT_EQ(m.to_int_vector(), (std::vector<int64_t>{0, 1, 0, 1, 1, 1}));
    EXPECT_EQ(ops::ne(a, b).to_int_vector(), (std::vector<int64_t>{1, 0, 1, 0, 0, 0}));
    EXPECT_EQ(ops::lt(a, b).to_int_vector(), (std::vector<int64_t>{1, 0, 0, 0, 0, 0}));
    EXPECT_EQ(ops::le(a, b).to_int_vector(), (std::vector<int64_t>{1, 1, 0, 1, 1, 1}));
    EXPECT_EQ(ops::gt(a, b).to_int_vector(), (std::vector<int64_t>{0, 0, 1, 0, 0, 0}));
    EXPECT_EQ(ops::ge(a, b).to_int_vector(), (std::vector<int64_t>{0, 1, 1, 1, 1, 1}));
  }
}

TEST(Elementwise, WhereBroadcastsThreeWays) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i64}) {
    Tensor cond = Tensor::from_ints({1, 0, 1, 0}, {4, 1}, DType::u8);    // (4, 1)
    Tensor a = ops::to_dtype(Tensor::from_vector({1, 2, 3}, {1, 3}), dt);  // (1, 3)
    Tensor b = ops::to_dtype(Tensor::from_vector({-1, -2}, {2, 1, 1}), dt);  // (2, 1, 1)
    Tensor out = ops::where(cond, a, b);
    ASSERT_EQ(out.shape(), (Shape{2, 4, 3}));
    std::vector<double> want;
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 3; ++k) want.push_back(j % 2 == 0 ? k + 1 : -(i + 1));
    EXPECT_EQ(out.to_double_vector(), want) << dtype_name(dt);
  }
  // Non-contiguous operands.
  Tensor cond = ops::transpose(Tensor::from_ints({1, 0, 0, 1, 1, 0}, {2, 3}, DType::u8), 0, 1);  // (3, 2)
  Tensor a = ops::transpose(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);
  Tensor b = Tensor::from_vector({10, 20, 30, 40, 50, 60}, {3, 2});
  // cond^T = [[1,1],[0,1],[0,0]], a^T = [[1,4],[2,5],[3,6]]
  EXPECT_EQ(ops::where(cond, a, b).to_double_vector(), (std::vector<double>{1, 4, 30, 5, 50, 60}));
}

TEST(Elementwise, InPlaceOpsWriteThroughAndBumpTheVersion) {
  for (DType dt : kFloatDTypes) {
    Tensor dst = ops::to_dtype(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), dt);
    Tensor src = ops::to_dtype(Tensor::from_vector({1, 2, 4}, {3}), dt);
    const uint64_t v0 = dst.version();
    ops::add_(dst, src, 0.5);
    EXPECT_GT(dst.version(), v0);
    EXPECT_EQ(dst.to_double_vector(), (std::vector<double>{1.5, 3, 5, 4.5, 6, 8}));
    const uint64_t v1 = dst.version();
    ops::mul_(dst, 2.0);
    EXPECT_GT(dst.version(), v1);
    EXPECT_EQ(dst.to_double_vector(), (std::vector<double>{3, 6, 10, 9, 12, 16}));
  }
  // Into a non-contiguous view: only the viewed elements change, and the base sees the bump.
  Tensor base = Tensor::zeros({3, 4}, DType::f32);
  Tensor col = ops::slice(base, 1, 1, 2);  // (3, 1)
  const uint64_t v0 = base.version();
  ops::add_(col, Tensor::from_vector({1, 2, 3}, {3, 1}));
  ops::mul_(col, 10.0);
  EXPECT_GT(base.version(), v0);
  EXPECT_EQ(base.to_double_vector(), (std::vector<double>{0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0}));
  // Integer in-place.
  Tensor ints = Tensor::from_ints({1, 2, 3}, {3});
  ops::add_(ints, Tensor::from_ints({5}, {1}), 2.0);
  EXPECT_EQ(ints.to_int_vector(), (std::vector<int64_t>{11, 12, 13}));
}

TEST(Elementwise, EmptyAndZeroDimTensors) {
  Tensor e = Tensor::zeros({0, 3});
  EXPECT_EQ(ops::add(e, Tensor::ones({3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(ops::exp(e).numel(), 0);
  EXPECT_EQ(ops::where(Tensor::zeros({0, 1}, DType::u8), e, Tensor::ones({3})).shape(), (Shape{0, 3}));
  Tensor s = Tensor::scalar(2.0, DType::f64), t = Tensor::scalar(3.0, DType::f64);
  Tensor p = ops::pow(s, t);
  EXPECT_EQ(p.dim(), 0);
  EXPECT_DOUBLE_EQ(p.item(), 8.0);
  EXPECT_DOUBLE_EQ(ops::mul(s, t).item(), 6.0);
  EXPECT_DOUBLE_EQ(ops::sqrt(ops::mul_scalar(s, 2.0)).item(), 2.0);
  EXPECT_EQ(ops::gt(t, s).item(), 1.0);
}

TEST(Elementwise, FailedInPlaceCallLeavesVersionAlone) {
  Tensor ints = Tensor::from_ints({1, 2}, {2});
  const uint64_t v0 = ints.version();
  EXPECT_THROW(ops::mul_(ints, 0.5), Error);
  EXPECT_THROW(ops::add_(ints, ints, 0.5), Error);
  EXPECT_EQ(ints.version(), v0);
  EXPECT_EQ(ints.to_int_vector(), (std::vector<int64_t>{1, 2}));
}

// Runs fn and expects a shardlab::Error whose message contains every piece of `needles`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << needles[0];
  } catch (const Error& e) {
    for (const std::string& n : needles) EXPECT_THAT(e.what(), HasSubstr(n));
  }
}

TEST(Elementwise, BadInputsNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4}), h = Tensor::zeros({2, 3}, DType::f64);
  expect_error([&] { ops::add(a, b); }, {"add", "(2, 3)", "(4,)"});
  expect_error([&] { ops::mul(a, b); }, {"mul", "(2, 3)", "(4,)"});
  expect_error([&] { ops::pow(a, b); }, {"pow", "(2, 3)", "(4,)"});
  expect_error([&] { ops::lt(a, b); }, {"lt", "(2, 3)", "(4,)"});
  expect_error([&] { ops::sub(a, h); }, {"sub", "f32", "f64", "(2, 3)"});
  expect_error([&] { ops::div(a, h); }, {"div", "f32", "f64"});
  expect_error([&] { ops::eq(a, h); }, {"eq", "f32", "f64"});
  expect_error([&] { ops::add_(a, Tensor::zeros({3, 3})); }, {"add_", "(3, 3)", "(2, 3)"});
  expect_error([&] { ops::add_(Tensor::zeros({3}), Tensor::zeros({2, 3})); }, {"add_", "(2, 3)", "(3,)"});
  expect_error([&] { ops::add_(a, h); }, {"add_", "f32", "f64"});
  Tensor ints = Tensor::from_ints({1, 2}, {2});
  expect_error([&] { ops::exp(ints); }, {"exp", "i64", "(2,)"});
  expect_error([&] { ops::gelu(ints); }, {"gelu", "i64"});
  expect_error([&] { ops::div(ints, ints); }, {"div", "i64"});
  expect_error([&] { ops::mul_scalar(ints, 0.5); }, {"mul_scalar", "0.5", "i64"});
  expect_error([&] { ops::where(a, a, a); }, {"where", "u8", "f32"});
  Tensor cond = Tensor::zeros({5}, DType::u8);
  expect_error([&] { ops::where(cond, a, a); }, {"where", "(5,)", "(2, 3)"});
  expect_error([&] { ops::where(Tensor::zeros({3}, DType::u8), a, h); }, {"where", "f32", "f64"});
}

}  // namespace
}  // namespace shardlab

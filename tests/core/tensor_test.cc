// Tensor basics: factories, dtypes, layout queries, values, printing and seeded random init.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <omp.h>

#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;

TEST(DType, TraitsTableMatchesTheEnum) {
  EXPECT_STREQ(dtype_name(DType::f32), "f32");
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  EXPECT_EQ(dtype_size(DType::f64), 8);
  EXPECT_EQ(dtype_size(DType::f16), 2);
  EXPECT_EQ(dtype_size(DType::u8), 1);
  EXPECT_TRUE(is_floating(DType::bf16));
  EXPECT_FALSE(is_floating(DType::i64));
  EXPECT_TRUE(traits(DType::nf4).is_quantized);
  EXPECT_EQ(dtype_bytes(DType::nf4, 128), 64);  // two 4-bit values per byte
  EXPECT_EQ(parse_dtype("bfloat16"), DType::bf16);
  EXPECT_EQ(parse_dtype("f16"), DType::f16);
  EXPECT_THROW(parse_dtype("float8"), Error);
}

TEST(Device, ParsesAndPrints) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
  try {
    Device::parse("tpu:0");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("tpu:0"));
  }
}

TEST(Tensor, FactoriesFillValuesInRowMajorOrder) {
  Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_double_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(Tensor::zeros({3}).to_double_vector(), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(Tensor::full({2}, 2.5, DType::f64).to_double_vector(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(Tensor::arange(4).to_int_vector(), (std::vector<int64_t>{0, 1, 2, 3}));
  const int64_t big = (int64_t{1} << 60) + 1;  // not representable in a double
  EXPECT_EQ(Tensor::from_ints({big}, {1}).to_int_vector()[0], big);
  EXPECT_EQ(Tensor::scalar(7.0).dim(), 0);
  EXPECT_DOUBLE_EQ(Tensor::scalar(7.0).item(), 7.0);
  EXPECT_THROW(Tensor::from_vector({1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(Tensor::from_vector({1, 2}, {2}).item(), Error);
}

TEST(Tensor, SixteenBitFloatsRoundToNearest) {
  // 1 + 2^-9 is halfway below bf16's resolution at 1 (2^-7): it rounds to 1. 1 + 2^-7 is exact.
  Tensor b = Tensor::from_vector({1.0 + std::ldexp(1.0, -9), 1.0 + std::ldexp(1.0, -7), 3.0}, {3}, DType::bf16);
  EXPECT_EQ(b.to_double_vector(), (std::vector<double>{1.0, 1.0 + std::ldexp(1.0, -7), 3.0}));
  Tensor h = Tensor::from_vector({1.0 + std::ldexp(1.0, -10), 65504.0}, {2}, DType::f16);
  EXPECT_EQ(h.to_double_vector(), (std::vector<double>{1.0 + std::ldexp(1.0, -10), 65504.0}));
}

TEST(Tensor, ToDtypeConvertsAndKeepsSameDtypeAsIs) {
  Tensor t = Tensor::from_vector({1.5, -2.25}, {2});
  Tensor d = ops::to_dtype(t, DType::f64);
  EXPECT_EQ(d.dtype(), DType::f64);
  EXPECT_EQ(d.to_double_vector(), (std::vector<double>{1.5, -2.25}));
  Tensor i = ops::to_dtype(t, DType::i32);
  EXPECT_EQ(i.to_int_vector(), (std::vector<int64_t>{1, -2}));
  EXPECT_TRUE(ops::to_dtype(t, DType::f32).is_same(t));
}

TEST(Tensor, RandomInitIsSeededAndIndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  Tensor a = Tensor::randn({300, 300}, 42);  // large enough to take the parallel path
  omp_set_num_threads(2);
  Tensor b = Tensor::randn({300, 300}, 42);
  omp_set_num_threads(saved);
  EXPECT_EQ(a.to_double_vector(), b.to_double_vector());
  Tensor c = Tensor::randn({300, 300}, 43);
  EXPECT_NE(a.to_double_vector(), c.to_double_vector());
  // Element i is a pure function of (seed, i): a prefix of a bigger tensor is the smaller tensor.
  Tensor small = Tensor::randn({10}, 42);
  std::vector<double> big = a.to_double_vector();
  EXPECT_EQ(small.to_double_vector(), std::vector<double>(big.begin(), big.begin() + 10));
}

TEST(Tensor, RandomDistributionsHaveTheRightMoments) {
  std::vector<double> n = Tensor::randn({200000}, 7, DType::f64, 1.0, 2.0).to_double_vector();
  double mean = 0, var = 0;
  for (double x : n) mean += x;
  mean /= n.size();
  for (double x : n) var += (x - mean) * (x - mean);
  var /= n.size();
  EXPECT_NEAR(mean, 1.0, 0.02);   // standard error 2/sqrt(2e5) = 0.0045
  EXPECT_NEAR(var, 4.0, 0.06);
  std::vector<double> u = Tensor::rand({100000}, 9, DType::f64, -1.0, 3.0).to_double_vector();
  for (double x : u) ASSERT_TRUE(x > -1.0 && x < 3.0);
}

TEST(Random, PhiloxMatchesTheReferenceVectors) {
  // Known-answer test from Random123's kat_vectors: philox4x32_10, counter 0, key 0.
  auto r = philox4x32(0, 0);
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Tensor, PrintsLikeTorch) {
  Tensor t = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(t.str(), "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=f32)");
  Tensor ids = Tensor::from_ints({3, 1}, {2});
  EXPECT_EQ(ids.str(), "tensor([3, 1], dtype=i64)");
  Tensor long_row = Tensor::arange(10, DType::f32);
  EXPECT_THAT(long_row.str(), HasSubstr("[0.0000, 1.0000, 2.0000, ..., 7.0000, 8.0000, 9.0000]"));
}

TEST(Tensor, OnlyFloatTensorsCanRequireGrad) {
  EXPECT_THROW(Tensor::arange(3).set_requires_grad(true), Error);
  Tensor t = Tensor::zeros({2});
  EXPECT_FALSE(t.requires_grad());
  t.set_requires_grad(true);
  EXPECT_TRUE(t.requires_grad());
}

TEST(Tensor, FromBlobWrapsForeignMemoryWithoutCopy) {
  std::vector<float> data = {1, 2, 3, 4};
  bool released = false;
  {
    Tensor t = Tensor::from_blob(data.data(), {2, 2}, DType::f32, Device::cpu(), [&](void*) { released = true; });
    data[3] = 40;
    EXPECT_EQ(t.to_double_vector(), (std::vector<double>{1, 2, 3, 40}));
  }
  EXPECT_TRUE(released);
}

TEST(Tensor, OpsRejectTensorsOnADeviceWithoutAKernelNamingOpAndDevice) {
  // A tensor labelled cuda:0 over host memory stands in for a CUDA tensor: with no CUDA backend
  // registered, ops must refuse it by name instead of reading it as host memory.
  std::vector<float> data = {1, 2};
  Tensor fake_cuda = Tensor::from_blob(data.data(), {2}, DType::f32, Device::cuda(0));
  try {
    ops::exp(fake_cuda);
    FAIL() << "exp accepted a cuda tensor";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exp"));
    EXPECT_THAT(e.what(), HasSubstr("cuda:0"));
    EXPECT_THAT(e.what(), HasSubstr("no CUDA backend"));
  }
  EXPECT_THROW(fake_cuda.to_double_vector(), Error);
}

}  // namespace
}  // namespace shardlab

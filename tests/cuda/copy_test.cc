// CUDA copy family against the CPU: host <-> device round trips, copy_ over every layout, dtype
// pair and broadcast, writes into strided destinations, fill_, and the argument errors. Every
// result must equal the CPU's bit for bit (copies round once, as the CPU does). Skips without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/async_copy.h"
#include "core/device_kernels.h"
#include "core/error.h"
#include "core/ops.h"
#include "cuda/device.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab::testing {
namespace {

using ::testing::HasSubstr;

constexpr Tolerance kExact{0.0, 0.0};
const DType kAllDTypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                            DType::i32, DType::i64, DType::u8,   DType::i8};

// Values every dtype holds exactly: integers in [0, 100).
Tensor small_ints(const Shape& shape, uint64_t seed, DType dtype) {
  return ops::to_dtype(Tensor::rand(shape, seed, DType::i32, 0.0, 100.0), dtype);
}

// Random values of `dtype`: normal for floats (so narrowing conversions round), small ints otherwise.
Tensor values(const Shape& shape, uint64_t seed, DType dtype) {
  return is_floating(dtype) ? Tensor::randn(shape, seed, dtype, 0.0, 10.0) : small_ints(shape, seed, dtype);
}

TEST(CudaCopy, RoundTripKeepsEveryDtypeBitExact) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : kAllDTypes) {
    const Tensor host = values({3, 1007}, 1, dt);
    const Tensor dev = on_cuda(host);
    ASSERT_TRUE(dev.device().is_cuda());
    const Tensor back = dev.to(Device::cpu());
    ASSERT_TRUE(back.device().is_cpu());
    EXPECT_EQ(back.to_double_vector(), host.to_double_vector()) << dtype_name(dt);
  }
  const Tensor empty = on_cuda(Tensor::empty({0, 5}));
  EXPECT_EQ(shape_str(empty.to(Device::cpu()).shape()), "(0, 5)");
}

// A view of a tensor, applied alike on the CPU and on the GPU.
using View = std::function<Tensor(const Tensor&)>;

struct ViewCase {
  const char* name;
  Shape base_shape;
  View view;
};

std::vector<ViewCase> view_cases() {
  return {
      {"transpose", {37, 53}, [](const Tensor& t) { return ops::transpose(t, 0, 1); }},
      {"permute 4-d", {3, 5, 7, 9}, [](const Tensor& t) { return ops::permute(t, {2, 0, 3, 1}); }},
      {"slice step 3", {5, 100}, [](const Tensor& t) { return ops::slice(t, 1, 1, 100, 3); }},
      {"offset 1 (unaligned contiguous)", {1001}, [](const Tensor& t) { return ops::narrow(t, 0, 1, 1000); }},
      {"expanded column", {6, 1}, [](const Tensor& t) { return ops::expand(t, {6, 11}); }},
  };
}

TEST(CudaCopy, CloneOfViewsEqualsTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  // f64, f32, bf16, u8: the 8-, 4-, 2- and 1-byte bit copies.
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::u8, DType::i64}) {
    for (const ViewCase& c : view_cases()) {
      const Tensor base = values(c.base_shape, 2, dt);
      const Tensor want = ops::clone(c.view(base));
      const Tensor got = ops::clone(c.view(on_cuda(base)));
      ASSERT_TRUE(got.is_contiguous());
      expect_matches_cpu(got, want, kExact, std::string(c.name) + " " + dtype_name(dt));
    }
  }
}

TEST(CudaCopy, EveryDtypePairConvertsLikeTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      const std::string what = std::string(dtype_name(from)) + " -> " + dtype_name(to);
      // Integer-valued sources convert exactly everywhere; float -> float also with rounding.
      std::vector<Tensor> sources = {small_ints({7, 129}, 3, from)};
      if (is_floating(from) && is_floating(to)) sources.push_back(Tensor::randn({7, 129}, 4, from, 0.0, 100.0));
      for (const Tensor& src : sources) {
        const Tensor want = ops::to_dtype(src, to);
        expect_matches_cpu(ops::to_dtype(on_cuda(src), to), want, kExact, what + " (contiguous)");
        // Non-contiguous source: the strided conversion kernel.
        const Tensor want_t = ops::to_dtype(ops::transpose(src, 0, 1), to);
        expect_matches_cpu(ops::to_dtype(ops::transpose(on_cuda(src), 0, 1), to), want_t, kExact,
                           what + " (transposed)");
        // Contiguous but one element in: unaligned for 16-byte vectors, so the strided kernel again.
        auto drop_first = [](const Tensor& t) { return ops::narrow(ops::view(t, {-1}), 0, 1, t.numel() - 1); };
        expect_matches_cpu(ops::to_dtype(drop_first(on_cuda(src)), to), ops::to_dtype(drop_first(src), to), kExact,
                           what + " (offset 1)");
      }
    }
  }
}

TEST(CudaCopy, BroadcastSourcesMatchTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  const std::vector<Shape> sources = {{5, 1}, {6}, {}, {1, 5, 6}, {4, 1, 6}};
  for (const Shape& s : sources) {
    const Tensor src = Tensor::randn(s, 5, DType::f32);
    for (DType dt : {DType::f32, DType::bf16}) {
      Tensor want = Tensor::empty({4, 5, 6}, dt);
      ops::copy_(want, src);
      Tensor got = Tensor::empty({4, 5, 6}, dt, Device::cuda(0));
      ops::copy_(got, on_cuda(src));
      expect_matches_cpu(got, want, kExact, "broadcast " + shape_str(s) + " -> " + dtype_name(dt));
    }
  }
}

TEST(CudaCopy, WritesIntoStridedDestinations) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor base = Tensor::randn({8, 9}, 6);
  const Tensor src = Tensor::randn({9, 8}, 7, DType::bf16);
  const Tensor col = Tensor::randn({8}, 8);
  Tensor cpu = ops::clone(base), gpu = on_cuda(base);
  ops::copy_(ops::transpose(cpu, 0, 1), src);  // dst strides (1, 9), with a bf16 -> f32 conversion
  ops::copy_(ops::transpose(gpu, 0, 1), on_cuda(src));
  expect_matches_cpu(gpu, cpu, kExact, "transposed destination");
  ops::copy_(ops::slice(cpu, 1, 2, 3), ops::unsqueeze(col, 1));  // one column: stride 9
  ops::copy_(ops::slice(gpu, 1, 2, 3), ops::unsqueeze(on_cuda(col), 1));
  expect_matches_cpu(gpu, cpu, kExact, "column destination");
}

TEST(CudaCopy, CopyFromTheHostConvertsAndBroadcastsOnTheGpu) {
  SL_SKIP_WITHOUT_CUDA();
  // copy_ with a CPU source brings it over first (core/cpu/copy.cc), then the CUDA copy_ runs.
  const Tensor src = Tensor::randn({5}, 12, DType::bf16);
  Tensor want = Tensor::empty({4, 5}, DType::f32);
  ops::copy_(want, src);
  Tensor got = Tensor::empty({4, 5}, DType::f32, Device::cuda(0));
  ops::copy_(got, src);
  expect_matches_cpu(got, want, kExact, "host bf16 (5,) -> device f32 (4, 5)");
}

TEST(CudaCopy, CopyBumpsTheDestinationVersion) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor dst = Tensor::empty({4, 4}, DType::f32, Device::cuda(0));
  const uint64_t before = dst.version();
  ops::copy_(dst, on_cuda(Tensor::ones({4, 4})));
  EXPECT_GT(dst.version(), before);
}

TEST(CudaCopy, LargeCopiesUseTheGridStrideLoop) {
  SL_SKIP_WITHOUT_CUDA();
  // 2.1M elements: more than one grid of the strided kernel on any current GPU.
  const Tensor src = Tensor::randn({2048, 1031}, 9, DType::bf16);
  expect_matches_cpu(ops::to_dtype(ops::transpose(on_cuda(src), 0, 1), DType::f32),
                     ops::to_dtype(ops::transpose(src, 0, 1), DType::f32), kExact, "transpose + bf16 -> f32");
  // 5M f16 -> f32 contiguous: several grid strides of the vectorized kernel (plus a tail).
  const Tensor big = Tensor::randn({5 * 1024 * 1024 + 3}, 10, DType::f16);
  expect_matches_cpu(ops::to_dtype(on_cuda(big), DType::f32), ops::to_dtype(big, DType::f32), kExact,
                     "f16 -> f32 contiguous");
}

TEST(CudaFill, MatchesTheCpuForEveryDtypeAndLayout) {
  SL_SKIP_WITHOUT_CUDA();
  for (DType dt : kAllDTypes) {
    for (double value : {0.0, 3.0, -1.0, 2.5}) {
      if (dt == DType::u8 && value < 0) continue;  // a negative value for u8 is undefined on the CPU
      if (!is_floating(dt) && value != std::trunc(value)) continue;
      const std::string what = std::string(dtype_name(dt)) + " value " + std::to_string(value);
      // Whole tensor (memset for 0, the vector kernel otherwise).
      Tensor cpu = Tensor::zeros({37, 41}, dt), gpu = on_cuda(Tensor::zeros({37, 41}, dt));
      ops::fill_(ops::narrow(cpu, 0, 1, 36), value + 1);  // offset start: unaligned for the vector kernel
      ops::fill_(ops::narrow(gpu, 0, 1, 36), value + 1);
      ops::fill_(ops::slice(cpu, 1, 0, 41, 3), value);  // strided columns
      ops::fill_(ops::slice(gpu, 1, 0, 41, 3), value);
      ops::fill_(ops::transpose(ops::narrow(cpu, 0, 0, 5), 0, 1), value);  // transposed rows
      ops::fill_(ops::transpose(ops::narrow(gpu, 0, 0, 5), 0, 1), value);
      expect_matches_cpu(gpu, cpu, kExact, what);
    }
  }
}

TEST(CudaFill, FactoriesOnTheGpu) {
  SL_SKIP_WITHOUT_CUDA();
  expect_matches_cpu(Tensor::full({5, 7}, 1.5, DType::bf16, Device::cuda(0)), Tensor::full({5, 7}, 1.5, DType::bf16),
                     kExact, "full bf16");
  expect_matches_cpu(Tensor::zeros({1001}, DType::i64, Device::cuda(0)), Tensor::zeros({1001}, DType::i64), kExact,
                     "zeros i64");
  // -0.0 is not all-zero bits: the kernel, not the memset, writes it, and the sign survives.
  const Tensor neg_zero = Tensor::full({9}, -0.0, DType::f32, Device::cuda(0)).to(Device::cpu());
  for (double v : neg_zero.to_double_vector()) EXPECT_TRUE(std::signbit(v));
}

TEST(CudaFill, HugeStridedFillUsesTheInt64Index) {
  SL_SKIP_WITHOUT_CUDA();
  // 2^32 + 1 elements (a step-2 slice of 2^33 + 2 bytes) is past the 32-bit index path.
  const int64_t bytes = (int64_t{1} << 33) + 2;
  size_t free_bytes = 0, total_bytes = 0;
  SL_CUDA_CHECK(cudaSetDevice(0));
  SL_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < static_cast<size_t>(bytes) + (size_t{2} << 30))
    GTEST_SKIP() << "needs " << bytes / (1 << 20) << " MiB of free GPU memory";
  const Tensor big = Tensor::zeros({bytes}, DType::u8, Device::cuda(0));
  const Tensor every_other = ops::slice(big, 0, 0, bytes, 2);
  ASSERT_EQ(every_other.numel(), (int64_t{1} << 32) + 1);
  ops::fill_(every_other, 7);
  const std::vector<double> head = ops::narrow(big, 0, 0, 6).to(Device::cpu()).to_double_vector();
  const std::vector<double> tail = ops::narrow(big, 0, bytes - 6, 6).to(Device::cpu()).to_double_vector();
  EXPECT_EQ(head, (std::vector<double>{7, 0, 7, 0, 7, 0}));
  EXPECT_EQ(tail, (std::vector<double>{7, 0, 7, 0, 7, 0}));
}

TEST(CudaCopy, ManyNonMergeableDimsAreSplitOnTheHost) {
  SL_SKIP_WITHOUT_CUDA();
  // A 10-d transpose-like permutation: no dims merge, so the launcher loops over the outer ones.
  const Shape shape(10, 2);
  const Tensor base = Tensor::randn(shape, 11);
  const std::vector<int64_t> reverse = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  expect_matches_cpu(ops::contiguous(ops::permute(on_cuda(base), reverse)), ops::contiguous(ops::permute(base, reverse)),
                     kExact, "reversed 10-d permutation");
}

// copy_async on the copy stream: ordered after the compute stream's work (a device source just
// written by a kernel is copied with its new values), pinned and pageable host sides, several
// copies in flight at once, each landing by its wait().
TEST(CudaCopy, AsyncCopiesOnTheCopyStreamLandByWait) {
  SL_SKIP_WITHOUT_CUDA();
  const Device gpu = Device::cuda(0);
  std::vector<Tensor> sources, devices, backs;
  std::vector<PendingCopyHandle> ups;
  for (int i = 0; i < 4; ++i) {
    const Tensor host = values({513, 257 + i}, 10 + i, DType::f32);
    Tensor src = i % 2 == 0 ? Tensor::empty_pinned(host.shape()) : Tensor::empty(host.shape());
    ops::copy_(src, host);
    sources.push_back(src);
    devices.push_back(Tensor::empty(host.shape(), DType::f32, gpu));
    ups.push_back(copy_async(devices.back(), src));
  }
  for (auto& up : ups) up->wait();
  std::vector<PendingCopyHandle> downs;
  for (size_t i = 0; i < devices.size(); ++i) {
    ops::mul_(devices[i], 2.0);  // a kernel on the compute stream; the copy below must see it
    backs.push_back(Tensor::empty_pinned(devices[i].shape()));
    downs.push_back(copy_async(backs.back(), devices[i]));
  }
  for (size_t i = 0; i < downs.size(); ++i) {
    downs[i]->wait();
    expect_matches_cpu(backs[i], ops::mul_scalar(sources[i], 2.0), kExact, "async round trip");
  }
}

TEST(CudaCopy, ErrorsNameTheOp) {
  SL_SKIP_WITHOUT_CUDA();
  const Tensor gpu = Tensor::zeros({4, 5}, DType::f32, Device::cuda(0));
  EXPECT_THAT(error_of([&] { ops::copy_(gpu, on_cuda(Tensor::ones({3}))); }),
              HasSubstr("copy_: source of shape (3,) cannot be broadcast to destination shape (4, 5)"));
  const DeviceKernels* k = registered_device_kernels(DeviceType::cuda);
  ASSERT_NE(k, nullptr);
  EXPECT_THAT(error_of([&] { k->copy_between_devices(Tensor::empty({4, 5}), on_cuda(Tensor::ones({5, 4}))); }),
              HasSubstr("copy_between_devices: shape mismatch"));
  EXPECT_THAT(error_of([&] { k->copy_between_devices(Tensor::empty({4, 5}), Tensor::ones({4, 5})); }),
              HasSubstr("copy_between_devices: exactly one side must be on the CPU"));
}

}  // namespace
}  // namespace shardlab::testing

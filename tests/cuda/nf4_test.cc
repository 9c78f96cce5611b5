// CUDA NF4 kernels against the CPU ones: decoded absmax and dequantized values bit for bit, and the
// fused dequantize-GEMM (forward and input gradient) against the CPU nf4_linear on bf16 inputs.
// Skips without a GPU (this file has only been compiled, not run, where it was written).
#include <gtest/gtest.h>

#include <cuda_bf16.h>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "core/ops/nf4.h"
#include "cuda/device.h"
#include "cuda/nf4.h"

namespace shardlab::cuda {
namespace {

#define SKIP_WITHOUT_GPU()                                                                  \
  do {                                                                                      \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device visible (no GPU or no driver)"; \
  } while (0)

// A device copy of a contiguous CPU tensor's bytes, freed on destruction.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { SL_CUDA_CHECK(cudaMalloc(&ptr, bytes)); }
  DeviceBuffer(const Tensor& t) : DeviceBuffer(static_cast<size_t>(t.nbytes())) {
    SL_CUDA_CHECK(cudaMemcpy(ptr, t.raw_data(), static_cast<size_t>(t.nbytes()), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr); }
};

template <typename T>
std::vector<T> to_host(const DeviceBuffer& b, int64_t n) {
  std::vector<T> out(static_cast<size_t>(n));
  SL_CUDA_CHECK(cudaMemcpy(out.data(), b.ptr, out.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

struct DeviceNf4 {
  DeviceBuffer packed, codes, nested, offset, absmax;
  Nf4DeviceWeight weight;
  explicit DeviceNf4(const Nf4Tensor& q)
      : packed(q.packed), codes(q.absmax_codes), nested(q.nested_absmax), offset(q.offset),
        absmax(static_cast<size_t>(q.num_blocks()) * 4) {
    nf4_decode_absmax(codes.as<uint8_t>(), nested.as<float>(), offset.as<float>(), q.num_blocks(),
                      ops::nf4_nested_map().data(), absmax.as<float>());
    weight = {packed.as<uint8_t>(), absmax.as<float>(), q.shape[0], q.shape[1]};
  }
};

TEST(CudaNf4, AbsmaxAndDequantizedValuesEqualTheCpu) {
  SKIP_WITHOUT_GPU();
  const Nf4Tensor q = ops::nf4_quantize(Tensor::randn({300, 70}, 1, DType::f32, 0.0, 0.02));
  DeviceNf4 d(q);
  const std::vector<float> absmax = to_host<float>(d.absmax, q.num_blocks());
  const std::vector<double> want_absmax = ops::nf4_absmax(q).to_double_vector();
  for (size_t b = 0; b < absmax.size(); ++b) ASSERT_EQ(absmax[b], static_cast<float>(want_absmax[b])) << b;
  DeviceBuffer out(static_cast<size_t>(q.numel()) * 4);
  nf4_dequantize(d.weight, out.as<float>());
  const std::vector<float> got = to_host<float>(out, q.numel());
  const std::vector<double> want = ops::nf4_dequantize(q, DType::f32).to_double_vector();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<float>(want[i])) << i;
}

TEST(CudaNf4, FusedGemmMatchesTheCpuKernel) {
  SKIP_WITHOUT_GPU();
  const int64_t M = 70, N = 130, K = 200;  // not multiples of the 64 x 64 tile
  const Nf4Tensor q = ops::nf4_quantize(Tensor::randn({N, K}, 2, DType::f32, 0.0, 0.05));
  DeviceNf4 d(q);
  const Tensor x = Tensor::randn({M, K}, 3, DType::bf16), dy = Tensor::randn({M, N}, 4, DType::bf16);
  DeviceBuffer dx_in(x), ddy(dy), y(static_cast<size_t>(M * N) * 2), dx(static_cast<size_t>(M * K) * 2);
  nf4_linear_forward(dx_in.as<__nv_bfloat16>(), d.weight, M, y.as<__nv_bfloat16>());
  nf4_linear_backward_input(ddy.as<__nv_bfloat16>(), d.weight, M, dx.as<__nv_bfloat16>());
  SL_CUDA_CHECK(cudaDeviceSynchronize());
  auto expect_close = [](const std::vector<__nv_bfloat16>& got, const std::vector<double>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const double g = __bfloat162float(got[i]);
      ASSERT_NEAR(g, want[i], 2e-2 + 2e-2 * std::abs(want[i])) << what << " element " << i;  // bf16 matmul tolerance
    }
  };
  expect_close(to_host<__nv_bfloat16>(y, M * N), ops::nf4_linear(x, q).to_double_vector(), "forward");
  expect_close(to_host<__nv_bfloat16>(dx, M * K), ops::nf4_linear_backward_input(dy, q).to_double_vector(), "dx");
}

}  // namespace
}  // namespace shardlab::cuda

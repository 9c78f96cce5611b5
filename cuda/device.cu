// Device discovery and error reporting for the CUDA backend, plus a fill kernel that is the
// smallest piece of real device code (it proves the sm_90 build and the memory round trip).
#include "cuda/device.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace shardlab::cuda {

namespace detail {
void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  // Clear the runtime's last-error slot so the next, unrelated call does not report this one again
  // (sticky errors such as an illegal address stay: the context is lost either way).
  (void)cudaGetLastError();
  std::ostringstream os;
  os << "CUDA error " << cudaGetErrorName(code) << " (" << cudaGetErrorString(code) << ") in " << call << " at "
     << file << ":" << line;
  throw Error(os.str());
}
}  // namespace detail

int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count;
  (void)cudaGetLastError();
  switch (status) {
    // No GPU, no (or too old a) driver, or the toolkit's stub libcuda: a CPU-only machine.
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorStubLibrary:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNotSupported:
      return 0;
    default:
      detail::throw_cuda_error(status, "cudaGetDeviceCount(&count)", __FILE__, __LINE__);
  }
}

static cudaDeviceProp properties(int index) {
  const int count = device_count();
  SL_CHECK(index >= 0 && index < count, "cuda device index ", index, " out of range (", count,
           " device(s) visible)");
  cudaDeviceProp prop{};
  SL_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop;
}

std::string device_name(int index) {
  const cudaDeviceProp prop = properties(index);
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(prop.totalGlobalMem) / (1 << 30));
  std::ostringstream os;
  os << prop.name << " (sm_" << prop.major << prop.minor << ", " << memory << ")";
  return os.str();
}

int compute_capability(int index) {
  const cudaDeviceProp prop = properties(index);
  return prop.major * 10 + prop.minor;
}

// Grid-stride loop: any n with a bounded grid.
__global__ void fill_kernel(float* dst, int64_t n, float value) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = value;
}

void fill(float* dst, int64_t n, float value) {
  SL_CHECK(n >= 0, "cuda::fill: negative element count ", n);
  if (n == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 4096);
  fill_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(dst, n, value);
  SL_CUDA_CHECK(cudaGetLastError());
}

std::vector<float> fill_roundtrip(int device, int64_t n, float value) {
  SL_CHECK(device >= 0 && device < device_count(), "cuda::fill_roundtrip: device ", device, " out of range (",
           device_count(), " device(s) visible)");
  SL_CUDA_CHECK(cudaSetDevice(device));
  std::vector<float> host(static_cast<size_t>(n));
  float* buffer = nullptr;
  SL_CUDA_CHECK(cudaMalloc(&buffer, sizeof(float) * host.size()));
  try {
    fill(buffer, n, value);
    SL_CUDA_CHECK(cudaMemcpy(host.data(), buffer, sizeof(float) * host.size(), cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(buffer);
    throw;
  }
  SL_CUDA_CHECK(cudaFree(buffer));
  return host;
}

}  // namespace shardlab::cuda

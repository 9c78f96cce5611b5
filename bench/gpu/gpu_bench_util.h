// What every GPU benchmark program shares: event timing of back-to-back calls on a stream, the
// median, a file-name form of the device's name, and a UTC timestamp for the JSON.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "cuda/device.h"

namespace shardlab::bench {

// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" -> "nvidia_h100_80gb_hbm3".
inline std::string sanitized(const std::string& device_name) {
  const std::string base = device_name.substr(0, device_name.find(" ("));
  std::string out;
  for (char c : base) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!out.empty() && out.back() != '_') out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.empty() ? "gpu" : out;
}

// Milliseconds of each of `iters` back-to-back calls, from events recorded between them on
// `stream` after `warmup` untimed calls. Host work inside fn (allocation, dispatch) that leaves
// the GPU idle shows up in the gaps, which is the point for the op-API side.
inline std::vector<double> time_calls(cudaStream_t stream, int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  SL_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<cudaEvent_t> events(static_cast<size_t>(iters) + 1);
  for (cudaEvent_t& e : events) SL_CUDA_CHECK(cudaEventCreate(&e));
  SL_CUDA_CHECK(cudaEventRecord(events[0], stream));
  for (int i = 0; i < iters; ++i) {
    fn();
    SL_CUDA_CHECK(cudaEventRecord(events[static_cast<size_t>(i) + 1], stream));
  }
  SL_CUDA_CHECK(cudaEventSynchronize(events.back()));
  std::vector<double> ms(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    float t = 0;
    SL_CUDA_CHECK(cudaEventElapsedTime(&t, events[static_cast<size_t>(i)], events[static_cast<size_t>(i) + 1]));
    ms[static_cast<size_t>(i)] = t;
  }
  for (cudaEvent_t e : events) SL_CUDA_CHECK(cudaEventDestroy(e));
  return ms;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace shardlab::bench

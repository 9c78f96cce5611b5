// How close the memory-bound fused ops come to the GPU's copy bandwidth, on Llama-3-8B shapes:
// device-to-device cudaMemcpy of 1 GiB, then RMSNorm, SwiGLU (forward, backward) and cross-entropy
// (forward + backward) through the op API on CUDA tensors. Prints a table and writes JSON.
//
// bytes = what the op must read plus what it must write, once each (a lower bound on its traffic):
//   copy                 2 * size                                   (read + write)
//   rms_norm_fwd         (2 T H + H) s + 4 T                        x, weight -> y, rstd (f32)
//   rms_norm_bwd         (3 T H + 2 H) s + 4 T                      dy, x, weight, rstd -> dx, dweight
//   swiglu_fwd           3 T I s                                    gate, up -> out
//   swiglu_bwd           5 T I s                                    dout, gate, up -> dgate, dup
//   cross_entropy f+b    3 T V s + 24 T + 8                         logits twice, dlogits; targets (i64)
//                                                                    twice, lse out and in (f32)
// with T tokens, H hidden, I intermediate, V vocab and s bytes per element. Each op's time is the
// median over --iters runs, each between two events on the compute stream; it includes whatever
// the caching allocator does for the op's outputs and workspaces.
//
// usage: bench_gpu_fused_bandwidth [--out PATH] [--iters N] [--dtype bf16|f16|f32] [--tokens T]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/json.h"
#include "core/ops.h"
#include "cuda/backend.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "bench/gpu/gpu_bench_util.h"

namespace shardlab {
namespace {

using bench::sanitized;

struct Args {
  std::string out;  // default: bench/results/fused_bandwidth_<device>.json
  int iters = 20;
  DType dtype = DType::bf16;
  int64_t tokens = 4096;
  int64_t hidden = 4096;
  int64_t intermediate = 14336;
  int64_t vocab = 128256;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    SL_CHECK(i + 1 < argc, "fused_bandwidth: ", key, " needs a value");
    const std::string value = argv[++i];
    if (key == "--out") a.out = value;
    else if (key == "--iters") a.iters = std::stoi(value);
    else if (key == "--dtype") a.dtype = parse_dtype(value);
    else if (key == "--tokens") a.tokens = std::stoll(value);
    else SL_FAIL("fused_bandwidth: unknown argument ", key, " (known: --out, --iters, --dtype, --tokens)");
  }
  SL_CHECK(a.iters >= 1, "fused_bandwidth: --iters must be >= 1, got ", a.iters);
  SL_CHECK(a.tokens >= 1, "fused_bandwidth: --tokens must be >= 1, got ", a.tokens);
  SL_CHECK(is_floating(a.dtype) && a.dtype != DType::f64, "fused_bandwidth: --dtype must be bf16, f16 or f32");
  return a;
}

// Median milliseconds of fn() over `iters` timed runs (after 2 untimed ones), each run bracketed
// by events on device 0's compute stream.
double median_ms(int iters, const std::function<void()>& fn) {
  const cudaStream_t stream = cuda::compute_stream(0);
  cudaEvent_t start, stop;
  SL_CUDA_CHECK(cudaEventCreate(&start));
  SL_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) fn();
  SL_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    SL_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    SL_CUDA_CHECK(cudaEventRecord(stop, stream));
    SL_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0.0f;
    SL_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  SL_CUDA_CHECK(cudaEventDestroy(start));
  SL_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return n % 2 == 1 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

struct Row {
  std::string name, shape, formula;
  double bytes = 0.0, ms = 0.0;
  double gbs() const { return bytes / (ms * 1e-3) / 1e9; }
};

Tensor randn_on_gpu(const Shape& shape, uint64_t seed, DType dtype) {
  return Tensor::randn(shape, seed, dtype).to(Device::cuda(0));
}

int run(const Args& args) {
  if (!cuda::initialize()) {
    std::fprintf(stderr, "fused_bandwidth: no CUDA device visible (no GPU or no driver); nothing to measure\n");
    return 1;
  }
  SL_CUDA_CHECK(cudaSetDevice(0));
  const std::string device = cuda::device_name(0);
  const DType dt = args.dtype;
  const double s = static_cast<double>(dtype_size(dt));
  const int64_t T = args.tokens, H = args.hidden, I = args.intermediate, V = args.vocab;
  const double Td = static_cast<double>(T), Hd = static_cast<double>(H), Id = static_cast<double>(I),
               Vd = static_cast<double>(V);
  std::vector<Row> rows;
  std::printf("device %s, dtype %s, T %lld, H %lld, I %lld, V %lld, median of %d runs\n", device.c_str(),
              dtype_name(dt), static_cast<long long>(T), static_cast<long long>(H), static_cast<long long>(I),
              static_cast<long long>(V), args.iters);

  {  // device-to-device copy of 1 GiB: the reference bandwidth
    const size_t bytes = size_t(1) << 30;
    const Tensor src = Tensor::zeros({static_cast<int64_t>(bytes)}, DType::u8, Device::cuda(0));
    const Tensor dst = Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, Device::cuda(0));
    const cudaStream_t stream = cuda::compute_stream(0);
    const double ms = median_ms(args.iters, [&] {
      SL_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToDevice, stream));
    });
    rows.push_back({"copy_d2d", "1 GiB", "2 * size", 2.0 * static_cast<double>(bytes), ms});
  }
  {  // RMSNorm over (T, H)
    const Tensor x = randn_on_gpu({T, H}, 1, dt), w = randn_on_gpu({H}, 2, dt), dy = randn_on_gpu({T, H}, 3, dt);
    const Tensor rstd = ops::rms_norm_fwd(x, w, 1e-5).rstd;
    const std::string shape = "(" + std::to_string(T) + ", " + std::to_string(H) + ")";
    rows.push_back({"rms_norm_fwd", shape, "(2TH + H)s + 4T", (2 * Td * Hd + Hd) * s + 4 * Td,
                    median_ms(args.iters, [&] { ops::rms_norm_fwd(x, w, 1e-5); })});
    rows.push_back({"rms_norm_bwd", shape, "(3TH + 2H)s + 4T", (3 * Td * Hd + 2 * Hd) * s + 4 * Td,
                    median_ms(args.iters, [&] { ops::rms_norm_bwd(dy, x, w, rstd); })});
  }
  {  // SwiGLU over (T, I)
    const Tensor g = randn_on_gpu({T, I}, 4, dt), u = randn_on_gpu({T, I}, 5, dt), d = randn_on_gpu({T, I}, 6, dt);
    const std::string shape = "(" + std::to_string(T) + ", " + std::to_string(I) + ")";
    rows.push_back({"swiglu_fwd", shape, "3TIs", 3 * Td * Id * s, median_ms(args.iters, [&] { ops::swiglu_fwd(g, u); })});
    rows.push_back({"swiglu_bwd", shape, "5TIs", 5 * Td * Id * s,
                    median_ms(args.iters, [&] { ops::swiglu_bwd(d, g, u); })});
  }
  {  // cross-entropy forward + backward over logits (T, V): ~1 GiB of bf16 logits, as much again for dlogits
    const Tensor logits = randn_on_gpu({T, V}, 7, dt);
    std::vector<int64_t> ids(static_cast<size_t>(T));
    uint64_t state = 12345;
    for (int64_t& id : ids) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      id = static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(V));
    }
    const Tensor targets = Tensor::from_ints(ids, {T}, DType::i64).to(Device::cuda(0));
    const Tensor dloss = Tensor::scalar(1.0, DType::f32).to(Device::cuda(0));
    const std::string shape = "(" + std::to_string(T) + ", " + std::to_string(V) + ")";
    rows.push_back({"cross_entropy_fwd_bwd", shape, "3TVs + 24T + 8", 3 * Td * Vd * s + 24 * Td + 8,
                    median_ms(args.iters, [&] {
                      const ops::CrossEntropyOut f = ops::cross_entropy_fwd(logits, targets, -100, ops::Reduction::mean);
                      ops::cross_entropy_bwd(dloss, logits, targets, f.lse, -100, ops::Reduction::mean, f.count);
                    })});
  }

  const double copy_gbs = rows.front().gbs();
  std::printf("%-24s %-18s %-20s %12s %10s %10s %8s\n", "op", "shape", "bytes formula", "MB moved", "ms", "GB/s",
              "of copy");
  json::Array ops_json;
  for (const Row& r : rows) {
    const double fraction = r.gbs() / copy_gbs;
    std::printf("%-24s %-18s %-20s %12.1f %10.4f %10.1f %7.1f%%\n", r.name.c_str(), r.shape.c_str(), r.formula.c_str(),
                r.bytes / 1e6, r.ms, r.gbs(), 100.0 * fraction);
    json::Value row = json::Value::object();
    row.set("op", r.name);
    row.set("shape", r.shape);
    row.set("bytes_formula", r.formula);
    row.set("bytes", r.bytes);
    row.set("median_ms", r.ms);
    row.set("gb_per_s", r.gbs());
    row.set("fraction_of_copy", fraction);
    ops_json.push_back(std::move(row));
  }

  json::Value doc = json::Value::object();
  doc.set("benchmark", "fused_bandwidth");
  doc.set("device", device);
  doc.set("dtype", dtype_name(dt));
  json::Value shapes = json::Value::object();
  shapes.set("tokens", T);
  shapes.set("hidden", H);
  shapes.set("intermediate", I);
  shapes.set("vocab", V);
  doc.set("shapes", std::move(shapes));
  doc.set("iterations", args.iters);
  doc.set("timing", "median of per-run cudaEvent times on the compute stream, after 2 warm-up runs");
  doc.set("bytes", "inputs read once + outputs written once (see bytes_formula; s = bytes per element)");
  doc.set("copy_gb_per_s", copy_gbs);
  doc.set("ops", json::Value(std::move(ops_json)));
  const std::string out =
      args.out.empty() ? "bench/results/fused_bandwidth_" + sanitized(device) + ".json" : args.out;
  const std::filesystem::path parent = std::filesystem::path(out).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  write_file_atomic(out, json::dump_pretty(doc) + "\n");
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace shardlab

int main(int argc, char** argv) {
  try {
    return shardlab::run(shardlab::parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

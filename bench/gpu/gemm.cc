// GPU GEMM throughput in bf16: ops::matmul (the op API on cuBLASLt, allocation of its output
// included) next to a bare cuBLASLt call on the same operands (its own handle, descriptors and
// algorithm, chosen once outside the timed loop), at 4096^3 and the Llama-3-8B layer projections
// for 4096 tokens. Prints TFLOP/s and the ratio ours/bare (target >= 0.95); writes JSON to --out.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/json.h"
#include "core/ops.h"
#include "cuda/backend.h"
#include "cuda/cublaslt_gemm.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "bench/gpu/gpu_bench_util.h"

namespace shardlab::bench {
namespace {

// y (M, N) = x (M, K) @ B; `weight_rows` means B is an (N, K) weight used through a transpose()
// view, as nn::Linear computes x @ W^T.
struct GemmCase {
  const char* name;
  int64_t M, K, N;
  bool weight_rows;
};

// Llama-3-8B: hidden 4096, 32 query heads and 8 KV heads of 128, intermediate 14336.
constexpr int64_t kTokens = 4096;
const GemmCase kCases[] = {
    {"square_4096", 4096, 4096, 4096, false},
    {"q_proj", kTokens, 4096, 4096, true},
    {"k_proj", kTokens, 4096, 1024, true},
    {"v_proj", kTokens, 4096, 1024, true},
    {"o_proj", kTokens, 4096, 4096, true},
    {"gate_proj", kTokens, 4096, 14336, true},
    {"up_proj", kTokens, 4096, 14336, true},
    {"down_proj", kTokens, 14336, 4096, true},
};

struct Options {
  std::string out;
  int iters = 50;
  int warmup = 10;
};

// A CPU tensor's bytes copied into fresh storage on cuda:0 (plain cudaMemcpy, so the benchmark
// depends on nothing but the GEMM path).
Tensor to_gpu(const Tensor& cpu) {
  Tensor gpu = Tensor::empty(cpu.shape(), cpu.dtype(), Device::cuda(0));
  SL_CUDA_CHECK(cudaMemcpy(gpu.raw_data(), cpu.raw_data(), static_cast<size_t>(cpu.nbytes()), cudaMemcpyHostToDevice));
  return gpu;
}

std::vector<float> bf16_to_host(const void* device_ptr, int64_t n) {
  std::vector<bf16_t> raw(static_cast<size_t>(n));
  SL_CUDA_CHECK(cudaMemcpy(raw.data(), device_ptr, raw.size() * sizeof(bf16_t), cudaMemcpyDeviceToHost));
  std::vector<float> out(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) out[i] = static_cast<float>(raw[i]);
  return out;
}

#define BARE_CHECK(call) SL_CUBLAS_CHECK(call, std::string("the bare cuBLASLt baseline"))

// The baseline: what a hand-written cuBLASLt call costs. Row-major y = x @ B is column-major
// y^T (N, M) = B^T x^T: cuBLASLt's A is B (an (N, K) weight read with op T, or a (K, N) matrix
// read with op N) and its B is x, read with op N. Default heuristic preferences but for the
// workspace, which it gets as ours does.
class BareGemm {
 public:
  BareGemm(const GemmCase& c, cudaStream_t stream) : stream_(stream) {
    BARE_CHECK(cublasLtCreate(&handle_));
    BARE_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t op_a = c.weight_rows ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    BARE_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    BARE_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    if (c.weight_rows) BARE_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_16BF, c.K, c.N, c.K));
    else BARE_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_16BF, c.N, c.K, c.N));
    BARE_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_16BF, c.K, c.M, c.K));
    BARE_CHECK(cublasLtMatrixLayoutCreate(&d_, CUDA_R_16BF, c.N, c.M, c.N));
    SL_CUDA_CHECK(cudaMalloc(&workspace_, static_cast<size_t>(cuda::kGemmWorkspaceBytes)));
    SL_CUDA_CHECK(cudaMalloc(&out_, static_cast<size_t>(c.M * c.N) * sizeof(bf16_t)));
    cublasLtMatmulPreference_t pref = nullptr;
    BARE_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t bytes = static_cast<uint64_t>(cuda::kGemmWorkspaceBytes);
    BARE_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof bytes));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    BARE_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, desc_, a_, b_, d_, d_, pref, 1, &result, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    SL_CHECK(found > 0, "bare cuBLASLt baseline: no algorithm for ", c.name);
    algo_ = result.algo;
    workspace_bytes_ = result.workspaceSize;
  }
  ~BareGemm() {
    cudaFree(out_);
    cudaFree(workspace_);
    cublasLtMatrixLayoutDestroy(d_);
    cublasLtMatrixLayoutDestroy(b_);
    cublasLtMatrixLayoutDestroy(a_);
    cublasLtMatmulDescDestroy(desc_);
    cublasLtDestroy(handle_);
  }
  BareGemm(const BareGemm&) = delete;
  BareGemm& operator=(const BareGemm&) = delete;

  void run(const void* x, const void* weight) {
    const float alpha = 1.0f, beta = 0.0f;
    BARE_CHECK(cublasLtMatmul(handle_, desc_, &alpha, weight, a_, x, b_, &beta, out_, d_, out_, d_, &algo_, workspace_,
                              workspace_bytes_, stream_));
  }
  const void* out() const { return out_; }

 private:
  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  void* workspace_ = nullptr;
  void* out_ = nullptr;
  size_t workspace_bytes_ = 0;
};

struct CaseResult {
  double ours_ms, bare_ms, max_abs_diff, max_abs_bare;
};

CaseResult run_case(const GemmCase& c, const Options& opt, cudaStream_t stream) {
  const Tensor x = to_gpu(Tensor::randn({c.M, c.K}, 1, DType::bf16));
  const Tensor w = to_gpu(c.weight_rows ? Tensor::randn({c.N, c.K}, 2, DType::bf16, 0.0, 0.02)
                                        : Tensor::randn({c.K, c.N}, 2, DType::bf16, 0.0, 0.02));
  auto ours = [&] { return ops::matmul(x, c.weight_rows ? ops::transpose(w, 0, 1) : w); };
  BareGemm bare(c, stream);

  CaseResult r{};
  r.ours_ms = median(time_calls(stream, opt.warmup, opt.iters, [&] { (void)ours(); }));
  r.bare_ms = median(time_calls(stream, opt.warmup, opt.iters, [&] { bare.run(x.raw_data(), w.raw_data()); }));

  // Same inputs, so the two results should agree to bf16 rounding (identical when the same
  // algorithm ran); a large difference means the op computed something else.
  const Tensor y = ours();
  SL_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<float> got = bf16_to_host(y.raw_data(), c.M * c.N), want = bf16_to_host(bare.out(), c.M * c.N);
  for (size_t i = 0; i < got.size(); ++i) {
    r.max_abs_diff = std::max(r.max_abs_diff, double(std::fabs(got[i] - want[i])));
    r.max_abs_bare = std::max(r.max_abs_bare, double(std::fabs(want[i])));
  }
  return r;
}

int usage(const char* prog, const char* error) {
  if (error) std::fprintf(stderr, "%s: %s\n", prog, error);
  std::fprintf(stderr,
               "usage: %s [--out PATH] [--iters N] [--warmup N]\n"
               "  --out     JSON results (default bench/results/gemm_<device>.json)\n"
               "  --iters   timed calls per shape and side, median reported (default 50, at least 20)\n"
               "  --warmup  untimed calls first (default 10)\n",
               prog);
  return error ? 2 : 0;
}

int run(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return usage(argv[0], nullptr);
    if (i + 1 >= argc) return usage(argv[0], ("missing value after " + arg).c_str());
    const std::string value = argv[++i];
    if (arg == "--out") opt.out = value;
    else if (arg == "--iters") opt.iters = std::atoi(value.c_str());
    else if (arg == "--warmup") opt.warmup = std::atoi(value.c_str());
    else return usage(argv[0], ("unknown option " + arg).c_str());
  }
  if (opt.iters < 20) return usage(argv[0], "--iters must be at least 20");
  if (opt.warmup < 1) return usage(argv[0], "--warmup must be at least 1");
  if (!cuda::initialize()) {
    std::fprintf(stderr, "%s: no CUDA device visible (no GPU or no driver): nothing to measure\n", argv[0]);
    return 1;
  }
  const std::string device = cuda::device_name(0);
  if (opt.out.empty()) opt.out = "bench/results/gemm_" + sanitized(device) + ".json";
  SL_CUDA_CHECK(cudaSetDevice(0));
  const cudaStream_t stream = cuda::compute_stream(0);

  std::printf("bf16 GEMM (f32 accumulation) on %s: median of %d calls after %d warm-up\n", device.c_str(), opt.iters,
              opt.warmup);
  std::printf("%-12s %6s %6s %6s %9s %9s %10s %10s %10s %10s\n", "shape", "M", "K", "N", "ours ms", "bare ms",
              "ours TF/s", "bare TF/s", "ours/bare", "max |diff|");
  json::Array rows;
  bool all_on_target = true;
  double layer_ours = 0, layer_bare = 0;  // one decoder layer's seven projections
  for (const GemmCase& c : kCases) {
    const CaseResult r = run_case(c, opt, stream);
    const double flops = 2.0 * double(c.M) * double(c.N) * double(c.K);
    const double ours_tflops = flops / (r.ours_ms * 1e-3) * 1e-12, bare_tflops = flops / (r.bare_ms * 1e-3) * 1e-12;
    const double ratio = r.bare_ms / r.ours_ms;
    all_on_target = all_on_target && ratio >= 0.95;
    if (c.weight_rows) {
      layer_ours += r.ours_ms;
      layer_bare += r.bare_ms;
    }
    std::printf("%-12s %6lld %6lld %6lld %9.3f %9.3f %10.1f %10.1f %10.3f %10.3g%s\n", c.name, (long long)c.M,
                (long long)c.K, (long long)c.N, r.ours_ms, r.bare_ms, ours_tflops, bare_tflops, ratio, r.max_abs_diff,
                ratio >= 0.95 ? "" : "  (below 0.95)");
    json::Object row;
    row.set("name", c.name);
    row.set("M", c.M);
    row.set("K", c.K);
    row.set("N", c.N);
    row.set("weight_transposed_view", c.weight_rows);
    row.set("ours_ms_median", r.ours_ms);
    row.set("bare_ms_median", r.bare_ms);
    row.set("ours_tflops", ours_tflops);
    row.set("bare_tflops", bare_tflops);
    row.set("ratio_ours_over_bare", ratio);
    row.set("max_abs_diff", r.max_abs_diff);
    row.set("max_abs_bare", r.max_abs_bare);
    rows.push_back(json::Value(std::move(row)));
  }
  std::printf("one Llama-3-8B layer's projections (%lld tokens): ours %.3f ms, bare %.3f ms, ours/bare %.3f\n",
              (long long)kTokens, layer_ours, layer_bare, layer_bare / layer_ours);

  json::Object doc;
  doc.set("bench", "gemm_gpu");
  doc.set("date", utc_now());
  doc.set("device", device);
  doc.set("dtype", "bf16");
  doc.set("accumulation", "f32");
  doc.set("iters", opt.iters);
  doc.set("warmup", opt.warmup);
  doc.set("timing", "cudaEvent between back-to-back calls on the compute stream, median");
  doc.set("ours", "ops::matmul(x, transpose(W)) through the op API, output allocation included");
  doc.set("bare", "cublasLtMatmul with its own handle, descriptors and heuristic algorithm chosen once");
  doc.set("target_ratio", 0.95);
  doc.set("all_on_target", all_on_target);
  doc.set("layer_projections_ours_ms", layer_ours);
  doc.set("layer_projections_bare_ms", layer_bare);
  doc.set("results", json::Value(std::move(rows)));
  write_file_atomic(opt.out, json::dump_pretty(json::Value(std::move(doc))) + "\n");
  std::printf("wrote %s\n", opt.out.c_str());
  return 0;
}

}  // namespace
}  // namespace shardlab::bench

int main(int argc, char** argv) {
  try {
    return shardlab::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}

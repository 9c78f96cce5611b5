// GPU attention throughput in bf16 through the op API: forward, backward and forward+backward of
// causal grouped-query attention shaped like Llama-3-8B (Hq = 32, Hkv = 8, head dim 128) at
// T = S = 2048 for batch 1, 2 and 4, next to a 4096^3 bf16 GEMM (ops::matmul on cuBLASLt) timed in
// the same run as the reference. Prints TFLOP/s and fwd+bwd / GEMM (target >= 0.60); writes JSON.
//
// FLOP counting as bench/attention_bench.cc (multiply-add = 2 FLOPs), causal halving included:
//   forward          = 4 * B * Hq * T * S * D / 2      (Q K^T and P V)
//   backward         = 2.5 * forward                    (Q K^T recomputed, dV, dP, dQ, dK)
//   forward+backward = 3.5 * forward
// Softmax exponentials and masking are not counted, nor the second Q K^T and dO V^T our
// deterministic backward recomputes (its dQ kernel cannot reuse the dK/dV kernel's P and dS).
//
// usage: bench_gpu_attention [--out PATH] [--iters N] [--warmup N] [--kernel auto|general]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
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
#include "cuda/device.h"
#include "cuda/stream.h"
#include "bench/gpu/gpu_bench_util.h"

namespace shardlab::bench {
namespace {

constexpr int64_t kHq = 32, kHkv = 8, kT = 2048, kD = 128, kGemmN = 4096;
constexpr int64_t kBatches[] = {1, 2, 4};
constexpr double kTargetRatio = 0.60;

struct Options {
  std::string out;
  int iters = 20;
  int warmup = 3;
  std::string kernel = "auto";
};

double tflops(double flops, double ms) { return flops / (ms * 1e-3) * 1e-12; }

double gemm_tflops(const Options& opt, cudaStream_t stream) {
  const Tensor a = Tensor::randn({kGemmN, kGemmN}, 1, DType::bf16).to(Device::cuda(0));
  const Tensor b = Tensor::randn({kGemmN, kGemmN}, 2, DType::bf16, 0.0, 0.02).to(Device::cuda(0));
  const double ms = median(time_calls(stream, opt.warmup, opt.iters, [&] { (void)ops::matmul(a, b); }));
  return tflops(2.0 * double(kGemmN) * double(kGemmN) * double(kGemmN), ms);
}

struct Row {
  int64_t B;
  double fwd_ms, bwd_ms, fwd_bwd_ms;
};

Row run_batch(int64_t B, const Options& opt, cudaStream_t stream) {
  const Device gpu = Device::cuda(0);
  const Tensor q = Tensor::randn({B, kHq, kT, kD}, 1, DType::bf16).to(gpu);
  const Tensor k = Tensor::randn({B, kHkv, kT, kD}, 2, DType::bf16).to(gpu);
  const Tensor v = Tensor::randn({B, kHkv, kT, kD}, 3, DType::bf16).to(gpu);
  const Tensor dout = Tensor::randn({B, kHq, kT, kD}, 4, DType::bf16).to(gpu);
  ops::AttentionOptions causal;
  causal.causal = true;
  const ops::AttentionOut saved = ops::attention_fwd(q, k, v, causal);
  Row r{B, 0, 0, 0};
  r.fwd_ms = median(time_calls(stream, opt.warmup, opt.iters, [&] { (void)ops::attention_fwd(q, k, v, causal); }));
  r.bwd_ms = median(time_calls(stream, opt.warmup, opt.iters,
                               [&] { (void)ops::attention_bwd(dout, q, k, v, saved.out, saved.lse, causal); }));
  r.fwd_bwd_ms = median(time_calls(stream, opt.warmup, opt.iters, [&] {
    const ops::AttentionOut f = ops::attention_fwd(q, k, v, causal);
    (void)ops::attention_bwd(dout, q, k, v, f.out, f.lse, causal);
  }));
  return r;
}

int usage(const char* prog, const char* error) {
  if (error) std::fprintf(stderr, "%s: %s\n", prog, error);
  std::fprintf(stderr,
               "usage: %s [--out PATH] [--iters N] [--warmup N] [--kernel auto|general]\n"
               "  --out     JSON results (default bench/results/attention_<device>.json)\n"
               "  --iters   timed calls per measurement, median reported (default 20, at least 10)\n"
               "  --warmup  untimed calls first (default 3)\n"
               "  --kernel  auto: the dispatch's choice (tensor cores here); general: the general path\n",
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
    else if (arg == "--kernel") opt.kernel = value;
    else return usage(argv[0], ("unknown option " + arg).c_str());
  }
  if (opt.iters < 10) return usage(argv[0], "--iters must be at least 10");
  if (opt.warmup < 1) return usage(argv[0], "--warmup must be at least 1");
  if (opt.kernel != "auto" && opt.kernel != "general") return usage(argv[0], "--kernel must be auto or general");
  ::setenv("SHARDLAB_ATTENTION_KERNEL", opt.kernel.c_str(), 1);
  if (!cuda::initialize()) {
    std::fprintf(stderr, "%s: no CUDA device visible (no GPU or no driver): nothing to measure\n", argv[0]);
    return 1;
  }
  const std::string device = cuda::device_name(0);
  if (opt.out.empty()) opt.out = "bench/results/attention_" + sanitized(device) + ".json";
  SL_CUDA_CHECK(cudaSetDevice(0));
  const cudaStream_t stream = cuda::compute_stream(0);

  const double gemm = gemm_tflops(opt, stream);
  std::printf("bf16 causal GQA attention (Hq %lld, Hkv %lld, T = S = %lld, D %lld, %s kernel) on %s\n", (long long)kHq,
              (long long)kHkv, (long long)kT, (long long)kD, opt.kernel.c_str(), device.c_str());
  std::printf("median of %d calls after %d warm-up; reference: %lld^3 bf16 GEMM (ops::matmul) %.1f TFLOP/s\n",
              opt.iters, opt.warmup, (long long)kGemmN, gemm);
  std::printf("%3s %9s %9s %9s %9s %11s %11s %11s\n", "B", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s", "f+b ms",
              "f+b TF/s", "f+b / GEMM");
  json::Array rows;
  bool all_on_target = true;
  for (int64_t B : kBatches) {
    const Row r = run_batch(B, opt, stream);
    const double fwd_flops = 4.0 * double(B) * double(kHq) * double(kT) * double(kT) * double(kD) / 2.0;
    const double fwd_tf = tflops(fwd_flops, r.fwd_ms), bwd_tf = tflops(2.5 * fwd_flops, r.bwd_ms);
    const double both_tf = tflops(3.5 * fwd_flops, r.fwd_bwd_ms), ratio = both_tf / gemm;
    all_on_target = all_on_target && ratio >= kTargetRatio;
    std::printf("%3lld %9.3f %9.1f %9.3f %9.1f %11.3f %11.1f %11.3f%s\n", (long long)B, r.fwd_ms, fwd_tf, r.bwd_ms,
                bwd_tf, r.fwd_bwd_ms, both_tf, ratio, ratio >= kTargetRatio ? "" : "  (below 0.60)");
    json::Object row;
    row.set("B", B);
    row.set("fwd_ms_median", r.fwd_ms);
    row.set("bwd_ms_median", r.bwd_ms);
    row.set("fwd_bwd_ms_median", r.fwd_bwd_ms);
    row.set("fwd_tflops", fwd_tf);
    row.set("bwd_tflops", bwd_tf);
    row.set("fwd_bwd_tflops", both_tf);
    row.set("fwd_bwd_over_gemm", ratio);
    rows.push_back(json::Value(std::move(row)));
  }

  json::Object doc;
  doc.set("bench", "attention_gpu");
  doc.set("date", utc_now());
  doc.set("device", device);
  doc.set("dtype", "bf16");
  doc.set("kernel", opt.kernel);
  doc.set("Hq", kHq);
  doc.set("Hkv", kHkv);
  doc.set("T", kT);
  doc.set("S", kT);
  doc.set("D", kD);
  doc.set("causal", true);
  doc.set("iters", opt.iters);
  doc.set("warmup", opt.warmup);
  doc.set("timing", "cudaEvent between back-to-back op-API calls on the compute stream, median");
  doc.set("flops", "fwd = 4 B Hq T S D / 2 (causal); bwd = 2.5 fwd; fwd+bwd = 3.5 fwd");
  doc.set("gemm_reference", "ops::matmul bf16 4096x4096x4096 (cuBLASLt), same run");
  doc.set("gemm_tflops", gemm);
  doc.set("target_ratio", kTargetRatio);
  doc.set("all_on_target", all_on_target);
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

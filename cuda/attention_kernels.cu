// CUDA kernels of the attention family behind the op API (see cuda/kernel_registry.h): the
// argument checks of core/cpu/attention.cc, operand layout, and the choice between the
// tensor-core path (flash_attention_fwd.cu / _bwd.cu) and the general path
// (flash_attention_general.cu).
//
// NOTE [CUDA attention kernels]
// We write our own FlashAttention-2-style kernels rather than calling cuDNN's fused attention:
// cuDNN's graph API is usable in practice only through its C++ frontend header library (not
// installed here), the raw backend descriptors are very verbose, and our kernels stay readable,
// teachable, and support packed-document segment ids, which cuDNN's SDPA does not express directly.
//   * Tensor-core path: bf16/f16, head dim 64 or 128, rows 16-byte aligned (strides multiples of 8
//     elements): mma.sync m16n8k16 with f32 accumulation, cp.async double buffering.
//   * General path: every float dtype and head dim, scalar FMAs on shared-memory tiles; the
//     reference for the tensor-core path on the GPU.
// The backward of both is deterministic (no atomics): dK/dV and dQ come from separate kernels that
// each own their outputs, at the price of computing P and dP twice (7 block products instead of
// FlashAttention-2's 5 with an atomic dQ). Set SHARDLAB_ATTENTION_KERNEL=general to force the
// general path (tests run both); unset or "auto" picks.
#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "cuda/flash_attention.cuh"
#include "cuda/kernel_registry.h"
#include "cuda/op_launch.h"
#include "core/attention_args.h"

namespace shardlab::cuda {

namespace {

using attention::Operand;
using attention::Params;

// A call's parameters plus the tensors they point into (copies made here stay alive with it).
struct Prepared {
  Params p;
  DType dtype = DType::f32;
  Tensor q, k, v, segment_ids;
};

// t itself when its head-dim stride is 1 (what the kernels read), else a contiguous copy.
Tensor unit_last_stride(const Tensor& t) {
  if (t.size(3) <= 1 || t.stride(3) == 1) return t;
  MemTagScope tag(MemTag::workspace);
  return ops::contiguous(t);
}

Operand operand_of(const Tensor& t) {
  Operand o;
  o.ptr = t.raw_data();
  // The stride of a size-1 dim is never used; 0 keeps it out of the alignment test.
  o.sb = t.size(0) > 1 ? t.stride(0) : 0;
  o.sh = t.size(1) > 1 ? t.stride(1) : 0;
  o.st = t.size(2) > 1 ? t.stride(2) : 0;
  return o;
}

// Every row of the operand starts on a 16-byte boundary (cp.async of 8 16-bit elements).
bool rows_aligned16(const Operand& o) {
  return aligned16(o.ptr) && o.sb % 8 == 0 && o.sh % 8 == 0 && o.st % 8 == 0;
}

// SHARDLAB_ATTENTION_KERNEL: unset, "" or "auto" picks the path; "general" forces the general one.
bool force_general_path() {
  const char* env = std::getenv("SHARDLAB_ATTENTION_KERNEL");
  if (env == nullptr) return false;
  const std::string value(env);
  if (value.empty() || value == "auto") return false;
  SL_CHECK(value == "general", "SHARDLAB_ATTENTION_KERNEL must be \"auto\" or \"general\", got \"", value, "\"");
  return true;
}

bool use_tensor_cores(const Prepared& a, std::initializer_list<Operand> operands) {
  if (force_general_path() || !attention::tc_supported(a.dtype, a.p.D)) return false;
  for (const Operand& o : operands)
    if (!rows_aligned16(o)) return false;
  return true;
}

int fits_int(const char* op, int64_t value, const char* what) {
  SL_CHECK(value <= INT_MAX / 2, op, ": ", what, " = ", value, " is too large for the CUDA kernel");
  return static_cast<int>(value);
}

// The checks of check_attention in core/cpu/attention.cc, with devices instead of the CPU.
Prepared prepare(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                 const ops::AttentionOptions& options) {
  const Device device = check_cuda_args(op, {q, k, v});
  if (options.segment_ids.defined()) check_same_device(op, q, options.segment_ids);
  const ops::AttentionDims dims = ops::check_attention_args(op, q, k, v, options);
  const int64_t Hq = dims.Hq, Hkv = dims.Hkv, D = dims.D;
  Prepared a;
  Params& p = a.p;
  a.dtype = q.dtype();
  p.B = fits_int(op, q.size(0), "batch");
  p.Hq = fits_int(op, Hq, "q heads");
  p.Hkv = fits_int(op, Hkv, "kv heads");
  p.T = fits_int(op, q.size(2), "query length");
  p.S = fits_int(op, k.size(2), "key length");
  p.D = fits_int(op, D, "head dim");
  p.group = p.Hq / p.Hkv;
  p.offset = p.S - p.T;
  p.causal = options.causal;
  p.scale = dims.scale;
  p.device = device.index;
  if (options.segment_ids.defined()) {
    const Tensor& ids = options.segment_ids;
    MemTagScope tag(MemTag::workspace);
    a.segment_ids = ops::contiguous(ids);
    p.seg = a.segment_ids.raw_data();
    p.seg64 = ids.dtype() == DType::i64;
  }
  a.q = unit_last_stride(q);
  a.k = unit_last_stride(k);
  a.v = unit_last_stride(v);
  p.q = operand_of(a.q);
  p.k = operand_of(a.k);
  p.v = operand_of(a.v);
  return a;
}

DType lse_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

ops::AttentionOut attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v,
                                const ops::AttentionOptions& options) {
  const char* op = "attention_fwd";
  Prepared a = prepare(op, q, k, v, options);
  Params& p = a.p;
  const Device device = Device::cuda(p.device);
  ops::AttentionOut res;
  res.out = Tensor::empty(q.shape(), q.dtype(), device);             // (B, Hq, T, D)
  res.lse = Tensor::empty({p.B, p.Hq, p.T}, lse_dtype(q.dtype()), device);  // (B, Hq, T)
  if (res.lse.numel() == 0) return res;
  p.out = operand_of(res.out);
  p.lse = res.lse.raw_data();
  const cudaStream_t stream = op_stream(device);
  if (use_tensor_cores(a, {p.q, p.k, p.v})) attention::fwd_tc(p, a.dtype, stream);
  else attention::fwd_general(p, a.dtype, stream);
  return res;
}

ops::AttentionGrads attention_bwd(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const ops::AttentionOptions& options) {
  const char* op = "attention_bwd";
  Prepared a = prepare(op, q, k, v, options);
  check_cuda_args(op, {q, dout, out, lse});
  SL_CHECK(dout.shape() == q.shape() && out.shape() == q.shape(), op, ": dout ", shape_str(dout.shape()), " and out ",
           shape_str(out.shape()), " must have q's shape ", shape_str(q.shape()));
  check_same_dtype(op, q, dout);
  check_same_dtype(op, q, out);
  Params& p = a.p;
  SL_CHECK(lse.shape() == Shape({q.size(0), q.size(1), q.size(2)}), op, ": lse ", shape_str(lse.shape()),
           " must have shape (B, Hq, T) = ", shape_str({q.size(0), q.size(1), q.size(2)}), " for q ",
           shape_str(q.shape()));
  const DType acc = lse_dtype(q.dtype());
  SL_CHECK(lse.dtype() == acc, op, ": lse must be ", dtype_name(acc), " for ", dtype_name(q.dtype()),
           " inputs, got ", dtype_name(lse.dtype()), " of shape ", shape_str(lse.shape()));
  const Device device = Device::cuda(p.device);
  const cudaStream_t stream = op_stream(device);
  ops::AttentionGrads res;
  res.dq = Tensor::empty(q.shape(), q.dtype(), device);
  res.dk = Tensor::empty(k.shape(), k.dtype(), device);
  res.dv = Tensor::empty(v.shape(), v.dtype(), device);
  if (int64_t{p.B} * p.Hq * p.T == 0) {  // no queries: k and v get zero gradient
    SL_CUDA_CHECK(cudaMemsetAsync(res.dk.raw_data(), 0, res.dk.nbytes(), stream));
    SL_CUDA_CHECK(cudaMemsetAsync(res.dv.raw_data(), 0, res.dv.nbytes(), stream));
    return res;
  }
  Tensor out_u = unit_last_stride(out), dout_u = unit_last_stride(dout), lse_c, delta;
  {
    MemTagScope tag(MemTag::workspace);
    lse_c = ops::contiguous(lse);
    delta = Tensor::empty({p.B, p.Hq, p.T}, acc, device);  // rowsum(dout * out)
  }
  p.out = operand_of(out_u);
  p.dout = operand_of(dout_u);
  p.lse = lse_c.raw_data();
  p.delta = delta.raw_data();
  p.dq = res.dq.raw_data();
  p.dk = res.dk.raw_data();
  p.dv = res.dv.raw_data();
  attention::bwd_delta(p, a.dtype, stream);
  if (use_tensor_cores(a, {p.q, p.k, p.v, p.dout})) attention::bwd_tc(p, a.dtype, stream);
  else attention::bwd_general(p, a.dtype, stream);
  return res;
}

}  // namespace

void register_attention_kernels(DeviceKernels& k) {
  k.attention_fwd = &attention_fwd;
  k.attention_bwd = &attention_bwd;
}

}  // namespace shardlab::cuda

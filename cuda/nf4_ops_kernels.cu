// CUDA kernels of the nf4 family behind the op API (see cuda/kernel_registry.h): absmax decoding,
// dequantization and the fused dequantize-GEMM of nf4_linear (forward and input gradient) wrap the
// raw kernels of cuda/nf4.cu. nf4_quantize runs on the CPU (it runs once, when a model loads): the
// weight is copied to the host, quantized by the CPU kernel and the four tensors copied back.
#include <algorithm>

#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/linalg.h"
#include "core/ops/nf4.h"
#include "core/ops/views.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/kernel_registry.h"
#include "cuda/nf4.h"
#include "cuda/op_launch.h"

namespace shardlab::cuda {

namespace {

// core/cpu/nf4.cc's check_part, with "on `device`" in place of "on the CPU".
void check_part(const char* op, const Nf4Tensor& q, const Tensor& t, const char* what, DType dtype, int64_t numel,
                Device device) {
  SL_CHECK(t.defined(), op, ": NF4 weight of shape ", shape_str(q.shape), " has no ", what, " tensor");
  SL_CHECK(t.dtype() == dtype && t.numel() == numel && t.is_contiguous(), op, ": NF4 weight of shape ",
           shape_str(q.shape), " needs a contiguous ", dtype_name(dtype), " ", what, " of ", numel,
           " elements, got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  SL_CHECK(t.device() == device, op, ": the ", what, " of the NF4 weight of shape ", shape_str(q.shape), " is on ",
           t.device().str(), ", not on ", device.str());
}

// ops::check_nf4 for a weight whose four tensors must all be on `device` (a CUDA device).
void check_nf4_on(const char* op, const Nf4Tensor& q, Device device) {
  const int64_t n = q.numel();
  SL_CHECK(n > 0, op, ": NF4 weight has an empty shape ", shape_str(q.shape));
  SL_CHECK(is_floating(q.dtype), op, ": NF4 weight of shape ", shape_str(q.shape), " records original dtype ",
           dtype_name(q.dtype), "; expected a floating dtype");
  SL_CHECK(device.is_cuda(), op, ": the NF4 weight of shape ", shape_str(q.shape), " is on ", device.str(),
           ", not on a CUDA device");
  const int64_t blocks = q.num_blocks();
  check_part(op, q, q.packed, "packed codes", DType::u8, ceil_div(n, 2), device);
  check_part(op, q, q.absmax_codes, "absmax codes", DType::u8, blocks, device);
  check_part(op, q, q.nested_absmax, "nested absmax", DType::f32, ceil_div(blocks, ops::kNf4AbsmaxBlock), device);
  check_part(op, q, q.offset, "offset", DType::f32, 1, device);
}

// The f32 absmax of every 64-block, decoded from the double quantization (allocated under the
// caller's MemTagScope).
Tensor decode_absmax(const Nf4Tensor& q, Device device, cudaStream_t stream) {
  Tensor absmax = Tensor::empty({q.num_blocks()}, DType::f32, device);
  nf4_decode_absmax(static_cast<const uint8_t*>(q.absmax_codes.raw_data()),
                    static_cast<const float*>(q.nested_absmax.raw_data()),
                    static_cast<const float*>(q.offset.raw_data()), q.num_blocks(), ops::nf4_nested_map().data(),
                    static_cast<float*>(absmax.raw_data()), stream);
  return absmax;
}

Nf4Tensor nf4_quantize_cuda(const Tensor& w) {
  const char* op = "nf4_quantize";
  const Device device = check_cuda_args(op, {w});
  SL_CHECK(is_floating(w.dtype()), op, ": expected a floating weight, got ", dtype_name(w.dtype()), " of shape ",
           shape_str(w.shape()));
  SL_CHECK(w.numel() > 0, op, ": cannot quantize an empty tensor of shape ", shape_str(w.shape()));
  Nf4Tensor host;
  {
    // The host copies are temporary; the device tensors below carry the caller's tag.
    MemTagScope scratch(MemTag::workspace);
    host = ops::nf4_quantize(w.to(Device::cpu()));
  }
  Nf4Tensor q;
  q.shape = host.shape;
  q.dtype = host.dtype;
  q.packed = host.packed.to(device);
  q.absmax_codes = host.absmax_codes.to(device);
  q.nested_absmax = host.nested_absmax.to(device);
  q.offset = host.offset.to(device);
  return q;
}

Tensor nf4_absmax_cuda(const Nf4Tensor& q) {
  const char* op = "nf4_absmax";
  SL_CHECK(q.packed.defined(), op, ": NF4 weight of shape ", shape_str(q.shape), " has no packed codes tensor");
  const Device device = q.packed.device();
  check_nf4_on(op, q, device);
  return decode_absmax(q, device, op_stream(device));
}

Tensor nf4_dequantize_cuda(const Nf4Tensor& q, DType out_dtype) {
  const char* op = "nf4_dequantize";
  SL_CHECK(q.packed.defined(), op, ": NF4 weight of shape ", shape_str(q.shape), " has no packed codes tensor");
  const Device device = q.packed.device();
  check_nf4_on(op, q, device);
  const cudaStream_t stream = op_stream(device);
  Tensor absmax;
  {
    MemTagScope scratch(MemTag::workspace);
    absmax = decode_absmax(q, device, stream);
  }
  Tensor out = Tensor::empty(q.shape, out_dtype, device);
  // Any shape: the flat elements form one row of the raw kernel's weight.
  const Nf4DeviceWeight weight{static_cast<const uint8_t*>(q.packed.raw_data()),
                               static_cast<const float*>(absmax.raw_data()), 1, q.numel()};
  dispatch_cuda_float(out_dtype, op, [&]<typename T>() {
    nf4_dequantize<T>(weight, static_cast<T*>(out.raw_data()), stream);
  });
  return out;
}

// core/cpu/nf4_linear.cc's check_args: the 2-D weight's (N, K), x's last dim against w.shape[which_dim].
std::pair<int64_t, int64_t> check_linear_args(const char* op, const Tensor& x, const Nf4Tensor& w,
                                              int64_t which_dim, const char* what) {
  const Device device = check_cuda_args(op, {x});
  check_nf4_on(op, w, device);
  SL_CHECK(w.shape.size() == 2, op, ": the NF4 weight must be 2-D (out_features, in_features), got shape ",
           shape_str(w.shape));
  check_float(op, x);
  SL_CHECK(x.dim() >= 1 && x.size(-1) == w.shape[which_dim], op, ": ", what, " of shape ", shape_str(x.shape()),
           " does not match the NF4 weight of shape ", shape_str(w.shape));
  return {w.shape[0], w.shape[1]};
}

// out (M, out_cols) = in (M, in_cols) times the dequantized weight, transposed (forward) or not.
template <bool kForward>
Tensor nf4_matmul(const char* op, const Tensor& in, const Nf4Tensor& w, int64_t in_cols, int64_t out_cols) {
  const Device device = in.device();
  Shape out_shape = in.shape();
  out_shape.back() = out_cols;
  Tensor out = Tensor::empty(out_shape, in.dtype(), device);
  const int64_t M = in.numel() / in_cols;
  if (M == 0) return out;
  const Tensor inc = ops::contiguous(in);
  const cudaStream_t stream = op_stream(device);
  Tensor absmax;
  {
    MemTagScope scratch(MemTag::workspace);
    absmax = decode_absmax(w, device, stream);
  }
  const Nf4DeviceWeight weight{static_cast<const uint8_t*>(w.packed.raw_data()),
                               static_cast<const float*>(absmax.raw_data()), w.shape[0], w.shape[1]};
  dispatch_cuda_float(in.dtype(), op, [&]<typename T>() {
    const T* a = static_cast<const T*>(inc.raw_data());
    T* c = static_cast<T*>(out.raw_data());
    if constexpr (kForward) nf4_linear_forward<T>(a, weight, M, c, stream);
    else nf4_linear_backward_input<T>(a, weight, M, c, stream);
  });
  return out;
}

// NOTE [nf4 GEMM path]: with few rows (generation, one token at a time) the product is bound by
// reading the weight, and the fused kernel reads it in 4 bits. With many rows (training) it is
// bound by arithmetic, where the CUDA-core fused kernel is far behind cuBLASLt's tensor cores: the
// weight is dequantized into a workspace in x's dtype and multiplied there, as bitsandbytes does.
// The workspace (one layer's weight in 16 bits) is freed as soon as the GEMM is queued.
constexpr int64_t kFusedMaxRows = 16;

Tensor dequantized_for(const Nf4Tensor& w, DType dtype) {
  MemTagScope scope(MemTag::workspace);
  return nf4_dequantize_cuda(w, dtype);  // (N, K)
}

Tensor nf4_linear_cuda(const Tensor& x, const Nf4Tensor& w) {
  const char* op = "nf4_linear";
  const auto [N, K] = check_linear_args(op, x, w, 1, "input");
  if (x.numel() / std::max<int64_t>(K, 1) > kFusedMaxRows)
    return ops::matmul(x, ops::transpose(dequantized_for(w, x.dtype()), 0, 1));
  return nf4_matmul<true>(op, x, w, K, N);  // y (..., N) = x (..., K) @ W^T
}

Tensor nf4_linear_backward_input_cuda(const Tensor& dy, const Nf4Tensor& w) {
  const char* op = "nf4_linear_backward_input";
  const auto [N, K] = check_linear_args(op, dy, w, 0, "output gradient");
  if (dy.numel() / std::max<int64_t>(N, 1) > kFusedMaxRows) return ops::matmul(dy, dequantized_for(w, dy.dtype()));
  return nf4_matmul<false>(op, dy, w, N, K);  // dx (..., K) = dy (..., N) @ W
}

}  // namespace

void register_nf4_kernels(DeviceKernels& k) {
  k.nf4_quantize = &nf4_quantize_cuda;
  k.nf4_absmax = &nf4_absmax_cuda;
  k.nf4_dequantize = &nf4_dequantize_cuda;
  k.nf4_linear = &nf4_linear_cuda;
  k.nf4_linear_backward_input = &nf4_linear_backward_input_cuda;
}

}  // namespace shardlab::cuda

// CUDA kernels of the optimizer family behind the op API (see cuda/kernel_registry.h): AdamW and
// SGD (one thread per element), the multi-tensor AdamW (cuda/multi_tensor_adamw.h), and the op
// wrappers of the 8-bit AdamW and blockwise quantization kernels in cuda/adamw_8bit.cu.
#include <cstring>
#include <string>
#include <vector>

#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/optim.h"
#include "core/ops/optim_8bit.h"
#include "cuda/adamw_8bit.h"
#include "cuda/adamw_math.cuh"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/kernel_registry.h"
#include "cuda/multi_tensor_adamw.h"
#include "cuda/op_launch.h"
#include "core/optim_args.h"

namespace shardlab::cuda {

namespace {

constexpr int kThreads = 256;

DType state_dtype_for(DType param) { return ops::optimizer_state_dtype(param); }

// The shared checks (core/optim_args.h) after the device checks.
void check_update(const char* op, const Tensor& param, const Tensor& grad, const Tensor& state, DType state_dtype) {
  check_same_device(op, param, grad);
  check_same_device(op, param, state);
  ops::check_optimizer_update(op, param, grad, state, state_dtype);
}

// ---- AdamW and SGD, one element per thread ----

template <typename T>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, acc_t<T>* __restrict__ m,
                             acc_t<T>* __restrict__ v, int64_t n, AdamWCoeffs<acc_t<T>> c) {
  using S = acc_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  S mi = m[i], vi = v[i];
  p[i] = from_acc<T>(adamw_update(to_acc(p[i]), to_acc(g[i]), mi, vi, c));
  m[i] = mi;
  v[i] = vi;
}

template <typename S>
struct SgdCoeffs {
  S lr, mu, wd;
  bool use_momentum, first_step, nesterov;
};

// torch.optim.SGD with dampening 0, in core/cpu/optim.cc's order.
template <typename T>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, acc_t<T>* __restrict__ buf, int64_t n,
                           SgdCoeffs<acc_t<T>> c) {
  using S = acc_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const S pi = to_acc(p[i]);
  S d = to_acc(g[i]) + c.wd * pi;
  if (c.use_momentum) {
    const S b = c.first_step ? d : c.mu * buf[i] + d;
    buf[i] = b;
    d = c.nesterov ? d + c.mu * b : b;
  }
  p[i] = from_acc<T>(pi - c.lr * d);
}

void adamw_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                     const ops::AdamWHyper& h) {
  const char* op = "adamw_step";
  const Device device = check_cuda_args(op, {param, grad, m, v});
  check_update(op, param, grad, m, state_dtype_for(param.dtype()));
  check_update(op, param, grad, v, state_dtype_for(param.dtype()));
  SL_CHECK(h.step >= 1, "adamw_step: step must be >= 1, got ", h.step);
  param.bump_version();
  m.bump_version();
  v.bump_version();
  const int64_t n = param.numel();
  if (n == 0) return;
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(param.dtype(), op, [&]<typename T>() {
    using S = acc_t<T>;
    adamw_kernel<T><<<grid_1d(n, kThreads, op), kThreads, 0, stream>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()), static_cast<S*>(m.raw_data()),
        static_cast<S*>(v.raw_data()), n, adamw_coeffs<S>(h));
    SL_CUDA_CHECK(cudaGetLastError());
  });
}

void sgd_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const ops::SgdHyper& h) {
  const char* op = "sgd_step";
  const bool use_momentum = h.momentum != 0.0;
  Device device;
  if (use_momentum) {
    SL_CHECK(momentum_buffer.defined(), "sgd_step: momentum ", h.momentum, " needs a momentum buffer");
    device = check_cuda_args(op, {param, grad, momentum_buffer});
    check_update(op, param, grad, momentum_buffer, state_dtype_for(param.dtype()));
    momentum_buffer.bump_version();
  } else {
    device = check_cuda_args(op, {param, grad});
    check_update(op, param, grad, grad, param.dtype());
  }
  param.bump_version();
  const int64_t n = param.numel();
  if (n == 0) return;
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(param.dtype(), op, [&]<typename T>() {
    using S = acc_t<T>;
    const SgdCoeffs<S> c{static_cast<S>(h.lr), static_cast<S>(h.momentum), static_cast<S>(h.weight_decay),
                         use_momentum, h.first_step, h.nesterov};
    S* buf = use_momentum ? static_cast<S*>(momentum_buffer.raw_data()) : nullptr;
    sgd_kernel<T><<<grid_1d(n, kThreads, op), kThreads, 0, stream>>>(
        static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()), buf, n, c);
    SL_CUDA_CHECK(cudaGetLastError());
  });
}

// ---- multi-tensor AdamW ----

// One parameter's pointers in the device table (its dtype is the launch's T).
struct TensorSlot {
  void* p;
  const void* g;
  void* m;
  void* v;
  int64_t n;
};
// One CUDA block's work: chunk `chunk` (kChunk elements) of tensor `tensor`.
struct ChunkRef {
  int32_t tensor;
  int32_t chunk;
};
constexpr int64_t kChunk = 65536;  // elements per block, as apex's multi_tensor_adam
constexpr int kMultiThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    multi_tensor_adamw_kernel(const TensorSlot* __restrict__ slots, const ChunkRef* __restrict__ refs,
                              AdamWCoeffs<acc_t<T>> c) {
  using S = acc_t<T>;
  const ChunkRef ref = refs[blockIdx.x];
  const TensorSlot s = slots[ref.tensor];
  T* p = static_cast<T*>(s.p);
  const T* g = static_cast<const T*>(s.g);
  S* m = static_cast<S*>(s.m);
  S* v = static_cast<S*>(s.v);
  const int64_t begin = static_cast<int64_t>(ref.chunk) * kChunk;
  const int64_t end = begin + kChunk < s.n ? begin + kChunk : s.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    S mi = m[i], vi = v[i];
    p[i] = from_acc<T>(adamw_update(to_acc(p[i]), to_acc(g[i]), mi, vi, c));
    m[i] = mi;
    v[i] = vi;
  }
}

// Uploads the table of the parameters `which` (all of dtype T) and launches one block per chunk.
template <typename T>
void launch_multi_tensor(const char* op, const std::vector<size_t>& which, const std::vector<Tensor>& params,
                         const std::vector<Tensor>& grads, const std::vector<Tensor>& ms,
                         const std::vector<Tensor>& vs, const ops::AdamWHyper& h, Device device, cudaStream_t stream) {
  std::vector<TensorSlot> slots;
  std::vector<ChunkRef> refs;
  for (size_t i : which) {
    const int64_t n = params[i].numel();
    if (n == 0) continue;
    const int64_t chunks = ceil_div(n, kChunk);
    SL_CHECK(chunks <= INT32_MAX && slots.size() < INT32_MAX, op, ": tensor ", i, " of shape ",
             shape_str(params[i].shape()), " has too many chunks");
    const auto slot = static_cast<int32_t>(slots.size());
    slots.push_back({params[i].raw_data(), grads[i].raw_data(), ms[i].raw_data(), vs[i].raw_data(), n});
    for (int64_t c = 0; c < chunks; ++c) refs.push_back({slot, static_cast<int32_t>(c)});
  }
  if (refs.empty()) return;
  SL_CHECK(refs.size() <= static_cast<size_t>(INT_MAX), op, ": ", refs.size(), " chunks exceed CUDA's grid limit");
  // One upload: [slots][refs]; sizeof(TensorSlot) is a multiple of 8, so refs stay aligned.
  const size_t slot_bytes = slots.size() * sizeof(TensorSlot), ref_bytes = refs.size() * sizeof(ChunkRef);
  std::vector<unsigned char> host(slot_bytes + ref_bytes);
  std::memcpy(host.data(), slots.data(), slot_bytes);
  std::memcpy(host.data() + slot_bytes, refs.data(), ref_bytes);
  Tensor table;
  {
    MemTagScope scratch(MemTag::workspace);
    table = Tensor::empty({static_cast<int64_t>(host.size())}, DType::u8, device);
  }
  // From pageable memory the call returns once the bytes are staged, so `host` may go.
  SL_CUDA_CHECK(cudaMemcpyAsync(table.raw_data(), host.data(), host.size(), cudaMemcpyHostToDevice, stream));
  const auto* base = static_cast<const unsigned char*>(table.raw_data());
  multi_tensor_adamw_kernel<T><<<static_cast<unsigned>(refs.size()), kMultiThreads, 0, stream>>>(
      reinterpret_cast<const TensorSlot*>(base), reinterpret_cast<const ChunkRef*>(base + slot_bytes),
      adamw_coeffs<acc_t<T>>(h));
  SL_CUDA_CHECK(cudaGetLastError());
}

// ---- 8-bit AdamW and blockwise quantization (kernels in cuda/adamw_8bit.cu) ----

// core/cpu/adamw_8bit.cc's check_contig.
void check_contig(const char* op, const Tensor& t, const char* what, DType dtype, int64_t numel) {
  SL_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous (shape ", shape_str(t.shape()), ")");
  SL_CHECK(t.dtype() == dtype, op, ": ", what, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype()),
           " (shape ", shape_str(t.shape()), ")");
  SL_CHECK(t.numel() == numel, op, ": ", what, " has shape ", shape_str(t.shape()), " (", t.numel(),
           " elements) but ", numel, " are needed");
}

void quantize_blockwise_cuda(const Tensor& x, const Tensor& codes, const Tensor& absmax, bool is_signed) {
  const char* op = "quantize_blockwise";
  const Device device = check_cuda_args(op, {x, codes, absmax});
  const int64_t n = x.numel(), nb = ops::num_blocks_8bit(n);
  check_contig(op, x, "input", DType::f32, n);
  check_contig(op, codes, "codes", DType::u8, n);
  check_contig(op, absmax, "absmax", DType::f32, nb);
  codes.bump_version();
  absmax.bump_version();
  quantize_blockwise(static_cast<const float*>(x.raw_data()), static_cast<uint8_t*>(codes.raw_data()),
                     static_cast<float*>(absmax.raw_data()), n, is_signed, op_stream(device));
}

void dequantize_blockwise_cuda(const Tensor& codes, const Tensor& absmax, const Tensor& out, bool is_signed) {
  const char* op = "dequantize_blockwise";
  const Device device = check_cuda_args(op, {codes, absmax, out});
  const int64_t n = codes.numel(), nb = ops::num_blocks_8bit(n);
  check_contig(op, codes, "codes", DType::u8, n);
  check_contig(op, absmax, "absmax", DType::f32, nb);
  check_contig(op, out, "output", DType::f32, n);
  out.bump_version();
  dequantize_blockwise(static_cast<const uint8_t*>(codes.raw_data()), static_cast<const float*>(absmax.raw_data()),
                       static_cast<float*>(out.raw_data()), n, is_signed, op_stream(device));
}

void adamw_8bit_step_cuda(const Tensor& param, const Tensor& grad, const Tensor& m_codes, const Tensor& v_codes,
                          const Tensor& absmax_m, const Tensor& absmax_v, const ops::AdamWHyper& h) {
  const char* op = "adamw_8bit_step";
  const Device device = check_cuda_args(op, {param, grad, m_codes, v_codes, absmax_m, absmax_v});
  check_same_dtype(op, param, grad);
  check_float(op, param);
  const int64_t n = param.numel(), nb = ops::num_blocks_8bit(n);
  SL_CHECK(param.is_contiguous(), op, ": parameter must be contiguous (shape ", shape_str(param.shape()), ")");
  SL_CHECK(grad.is_contiguous() && grad.numel() == n, op, ": gradient ", shape_str(grad.shape()),
           " must be contiguous with the parameter's size ", shape_str(param.shape()));
  check_contig(op, m_codes, "m codes", DType::u8, n);
  check_contig(op, v_codes, "v codes", DType::u8, n);
  check_contig(op, absmax_m, "m absmax", DType::f32, nb);
  check_contig(op, absmax_v, "v absmax", DType::f32, nb);
  SL_CHECK(h.step >= 1, op, ": step must be >= 1, got ", h.step);
  for (const Tensor* t : {&param, &m_codes, &v_codes, &absmax_m, &absmax_v}) t->bump_version();
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(param.dtype(), op, [&]<typename T>() {
    adamw_8bit_step<T>(static_cast<T*>(param.raw_data()), static_cast<const T*>(grad.raw_data()),
                       static_cast<uint8_t*>(m_codes.raw_data()), static_cast<uint8_t*>(v_codes.raw_data()),
                       static_cast<float*>(absmax_m.raw_data()), static_cast<float*>(absmax_v.raw_data()), n, h,
                       stream);
  });
}

// The multi-tensor AdamW under the name `op` (errors name it and the index of a bad entry): every
// entry is checked before any is written.
void multi_tensor_adamw(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                        const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, const ops::AdamWHyper& h) {
  SL_CHECK(grads.size() == params.size() && ms.size() == params.size() && vs.size() == params.size(), op,
           ": got ", params.size(), " parameters, ", grads.size(), " gradients, ", ms.size(), " first moments and ",
           vs.size(), " second moments; the lists must have equal lengths");
  SL_CHECK(h.step >= 1, op, ": step must be >= 1, got ", h.step);
  if (params.empty()) return;
  const Device device = check_cuda_args(op, {params[0]});
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string what = std::string(op) + " (tensor " + std::to_string(i) + ")";
    check_cuda_args(what.c_str(), {params[i], grads[i], ms[i], vs[i]});
    check_same_device(what.c_str(), params[0], params[i]);
    check_update(what.c_str(), params[i], grads[i], ms[i], state_dtype_for(params[i].dtype()));
    check_update(what.c_str(), params[i], grads[i], vs[i], state_dtype_for(params[i].dtype()));
    check_float(what.c_str(), params[i]);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].bump_version();
    ms[i].bump_version();
    vs[i].bump_version();
  }
  const cudaStream_t stream = op_stream(device);
  for (DType dtype : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    std::vector<size_t> which;
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].dtype() == dtype) which.push_back(i);
    if (which.empty()) continue;
    dispatch_cuda_float(dtype, op, [&]<typename T>() {
      launch_multi_tensor<T>(op, which, params, grads, ms, vs, h, device, stream);
    });
  }
}

// The op table's adamw_step_multi (ops::adamw_step_multi forwards here for CUDA tensors).
void adamw_step_multi_cuda(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                           const ops::AdamWHyper& h) {
  multi_tensor_adamw("adamw_step_multi", params, grads, exp_avgs, exp_avg_sqs, h);
}

}  // namespace

void multi_tensor_adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                             const std::vector<Tensor>& ms, const std::vector<Tensor>& vs, const ops::AdamWHyper& h) {
  multi_tensor_adamw("multi_tensor_adamw_step", params, grads, ms, vs, h);
}

void register_optimizer_kernels(DeviceKernels& k) {
  k.adamw_step = &adamw_step_cuda;
  k.adamw_step_multi = &adamw_step_multi_cuda;
  k.sgd_step = &sgd_step_cuda;
  k.adamw_8bit_step = &adamw_8bit_step_cuda;
  k.quantize_blockwise = &quantize_blockwise_cuda;
  k.dequantize_blockwise = &dequantize_blockwise_cuda;
}

}  // namespace shardlab::cuda

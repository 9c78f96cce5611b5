// SwiGLU on CUDA, the twin of core/cpu/swiglu.cc: out = silu(gate) * up and its backward, one
// element-wise pass over contiguous operands with 16-byte vector loads where alignment allows
// (strided views, such as halves of a fused gate/up matmul output, are made contiguous first).
#include "core/checks.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/llama_fused_internal.cuh"
#include "cuda/op_launch.h"

namespace shardlab::cuda {

namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ A exp_acc(A x) {
  if constexpr (std::is_same_v<A, double>) return exp(x);
  else return expf(x);  // the accurate expf, not __expf: results are compared with the CPU's
}

// out = g * u / (1 + exp(-g)), in the CPU kernel's order.
template <typename A>
__device__ __forceinline__ A swiglu_value(A g, A u) {
  return g * u / (A(1) + exp_acc(-g));
}

// Thread k handles elements [k * V, k * V + V); the last pack may be partial (scalar tail).
template <typename T, int V>
__global__ void swiglu_fwd_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                                  int64_t n) {
  using P = Pack<T, V>;
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i >= n) return;
  if (i + V <= n) {
    const P g = *reinterpret_cast<const P*>(gate + i);
    const P u = *reinterpret_cast<const P*>(up + i);
    P o;
#pragma unroll
    for (int k = 0; k < V; ++k) o.v[k] = from_acc<T>(swiglu_value(to_acc(g.v[k]), to_acc(u.v[k])));
    *reinterpret_cast<P*>(out + i) = o;
  } else {
    for (int64_t j = i; j < n; ++j) out[j] = from_acc<T>(swiglu_value(to_acc(gate[j]), to_acc(up[j])));
  }
}

// s = sigmoid(g); dgate = d * u * s * (1 + g * (1 - s)); dup = d * g * s (the CPU kernel's order).
template <typename A>
__device__ __forceinline__ void swiglu_grad(A d, A g, A u, A& dg, A& du) {
  const A s = A(1) / (A(1) + exp_acc(-g));
  dg = d * u * s * (A(1) + g * (A(1) - s));
  du = d * g * s;
}

template <typename T, int V>
__global__ void swiglu_bwd_kernel(const T* __restrict__ dout, const T* __restrict__ gate, const T* __restrict__ up,
                                  T* __restrict__ dgate, T* __restrict__ dup, int64_t n) {
  using A = acc_t<T>;
  using P = Pack<T, V>;
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i >= n) return;
  if (i + V <= n) {
    const P d = *reinterpret_cast<const P*>(dout + i);
    const P g = *reinterpret_cast<const P*>(gate + i);
    const P u = *reinterpret_cast<const P*>(up + i);
    P dg, du;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      A a, b;
      swiglu_grad(to_acc(d.v[k]), to_acc(g.v[k]), to_acc(u.v[k]), a, b);
      dg.v[k] = from_acc<T>(a);
      du.v[k] = from_acc<T>(b);
    }
    *reinterpret_cast<P*>(dgate + i) = dg;
    *reinterpret_cast<P*>(dup + i) = du;
  } else {
    for (int64_t j = i; j < n; ++j) {
      A a, b;
      swiglu_grad(to_acc(dout[j]), to_acc(gate[j]), to_acc(up[j]), a, b);
      dgate[j] = from_acc<T>(a);
      dup[j] = from_acc<T>(b);
    }
  }
}

void check_pair(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  check_float(op, a);
  check_same_dtype(op, a, b);
  SL_CHECK(a.shape() == b.shape(), op, ": ", a_name, " of shape ", shape_str(a.shape()), " and ", b_name,
           " of shape ", shape_str(b.shape()), " must have the same shape");
}

// Launches kernel<T, V> over n elements, V = 16-byte packs when every pointer is aligned for them.
template <typename T, typename Launch>
void launch_packed(const char* op, int64_t n, std::initializer_list<const void*> ptrs, Launch&& launch) {
  bool aligned = true;
  for (const void* p : ptrs) aligned = aligned && aligned16(p);
  if (aligned) {
    constexpr int V = kPackWidth<T>;
    launch.template operator()<V>(grid_1d(ceil_div(n, V), kThreads, op));
  } else {
    launch.template operator()<1>(grid_1d(n, kThreads, op));
  }
  SL_CUDA_CHECK(cudaGetLastError());
}

Tensor swiglu_fwd_cuda(const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_fwd";
  const Device device = check_cuda_args(op, {gate, up});
  check_pair(op, "gate", gate, "up", up);
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), device);
  const int64_t n = out.numel();
  if (n == 0) return out;
  const Tensor g = ops::contiguous(gate), u = ops::contiguous(up);
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(gate.dtype(), op, [&]<typename T>() {
    const T* gp = static_cast<const T*>(g.raw_data());
    const T* upp = static_cast<const T*>(u.raw_data());
    T* op_ = static_cast<T*>(out.raw_data());
    launch_packed<T>(op, n, {gp, upp, op_}, [&]<int V>(unsigned grid) {
      swiglu_fwd_kernel<T, V><<<grid, kThreads, 0, stream>>>(gp, upp, op_, n);
    });
  });
  return out;
}

ops::SwigluGrads swiglu_bwd_cuda(const Tensor& dout, const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_bwd";
  const Device device = check_cuda_args(op, {dout, gate, up});
  check_pair(op, "gate", gate, "up", up);
  check_pair(op, "dout", dout, "gate", gate);
  ops::SwigluGrads grads{Tensor::empty(gate.shape(), gate.dtype(), device),
                         Tensor::empty(up.shape(), up.dtype(), device)};
  const int64_t n = gate.numel();
  if (n == 0) return grads;
  const Tensor d = ops::contiguous(dout), g = ops::contiguous(gate), u = ops::contiguous(up);
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(gate.dtype(), op, [&]<typename T>() {
    const T* dp = static_cast<const T*>(d.raw_data());
    const T* gp = static_cast<const T*>(g.raw_data());
    const T* upp = static_cast<const T*>(u.raw_data());
    T* dgp = static_cast<T*>(grads.dgate.raw_data());
    T* dup = static_cast<T*>(grads.dup.raw_data());
    launch_packed<T>(op, n, {dp, gp, upp, dgp, dup}, [&]<int V>(unsigned grid) {
      swiglu_bwd_kernel<T, V><<<grid, kThreads, 0, stream>>>(dp, gp, upp, dgp, dup, n);
    });
  });
  return grads;
}

}  // namespace

void register_swiglu_kernels(DeviceKernels& k) {
  k.swiglu_fwd = &swiglu_fwd_cuda;
  k.swiglu_bwd = &swiglu_bwd_cuda;
}

}  // namespace shardlab::cuda

// CUDA embedding lookup and its deterministic backward (registered by
// register_loss_lookup_kernels), with the semantics of core/cpu/embedding.cc.
// Forward: one block per token copies its weight row. Backward: the token positions are sorted by
// id with a stable radix sort (cub), then one block per weight row sums its tokens' gradient rows
// in token order, exactly the CPU's order (no float atomics: bit-identical from run to run).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <bit>
#include <cub/device/device_radix_sort.cuh>

#include "core/ops/views.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/reduce_internal.cuh"

namespace shardlab::cuda::reduce_family {

namespace {

constexpr int kThreads = 256;
// Blocks of a token- or row-strided launch are capped at this many (each block then loops).
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

// Threads per block for rows of C elements: a multiple of the warp size, at most kThreads.
int threads_for_row(int64_t C) {
  return static_cast<int>(std::clamp<int64_t>(ceil_div(C, 32) * 32, 32, kThreads));
}

// out[t, :] = weight[ids[t], :] for the n tokens (ids contiguous, weight strided); a token whose
// id is outside [0, V) is flagged and left unwritten (the op then fails).
template <typename W, typename I>
__global__ void embedding_forward_kernel(const W* weight, int64_t row_stride, int64_t col_stride, int64_t V,
                                         int64_t C, const I* ids, int64_t n, W* out, unsigned long long* bad) {
  for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
    const int64_t id = static_cast<int64_t>(ids[t]);
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) flag_bad_position(bad, t);
      continue;
    }
    const W* src = weight + id * row_stride;
    W* dst = out + t * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c * col_stride];
  }
}

// The sort input: keys[t] = ids[t] (0 for a bad id, which is flagged) and positions[t] = t.
template <typename I>
__global__ void sort_input_kernel(const I* ids, int64_t n, int64_t V, uint64_t* keys, int64_t* positions,
                                  unsigned long long* bad) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t id = static_cast<int64_t>(ids[t]);
    const bool ok = id >= 0 && id < V;
    if (!ok) flag_bad_position(bad, t);
    keys[t] = ok ? static_cast<uint64_t>(id) : 0;
    positions[t] = t;
  }
}

// First k in [0, n) with keys[k] >= v (keys sorted ascending).
__device__ inline int64_t lower_bound(const uint64_t* keys, int64_t n, uint64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// dweight[v, :] = sum of grad[positions[k], :] over the k with sorted_keys[k] == v, in increasing
// k (= increasing token position: the sort is stable), accumulated in acc_t<T> and rounded once.
// One block per weight row v (row-strided when V exceeds the grid cap); rows without tokens get 0.
template <typename T>
__global__ void embedding_backward_kernel(const T* grad, const uint64_t* sorted_keys, const int64_t* positions,
                                          int64_t n, int64_t V, int64_t C, T* dweight) {
  using A = acc_t<T>;
  __shared__ int64_t range[2];
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    __syncthreads();  // the previous row's readers are done with `range`
    if (threadIdx.x == 0) {
      range[0] = lower_bound(sorted_keys, n, static_cast<uint64_t>(v));
      range[1] = lower_bound(sorted_keys, n, static_cast<uint64_t>(v) + 1);
    }
    __syncthreads();
    const int64_t begin = range[0], end = range[1];
    T* dst = dweight + v * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A acc = 0;
      for (int64_t k = begin; k < end; ++k) acc += to_acc(grad[positions[k] * C + c]);
      dst[c] = from_acc<T>(acc);
    }
  }
}

// The error for the first flagged token, as the CPU's read_ids words it.
template <typename I>
[[noreturn]] void fail_bad_id(const char* op, const I* ids, int64_t t, int64_t V, const Shape& weight_shape,
                              const Shape& ids_shape, cudaStream_t stream) {
  const int64_t id = static_cast<int64_t>(read_device_element(ids + t, stream));
  SL_FAIL(op, ": id ", id, " at position ", t, " is out of range for ", V, " embeddings (weight shape ",
          shape_str(weight_shape), ", ids shape ", shape_str(ids_shape), ")");
}

void check_ids_dtype(const char* op, const Tensor& ids) {
  SL_CHECK(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, op, ": index dtype ", dtype_name(ids.dtype()),
           " is not supported (needs i32 or i64)");
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  const char* op = "embedding";
  check_on_cuda(op, {weight, ids});
  check_dim(op, weight, 2, "weight");
  check_ids_dtype(op, ids);
  const int64_t V = weight.size(0), C = weight.size(1);
  const Tensor id = ops::contiguous(ids);  // logical order, as the CPU reads them
  const int64_t n = id.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  const Device device = weight.device();
  Tensor out = Tensor::empty(out_shape, weight.dtype(), device);
  if (n == 0) return out;
  cudaStream_t stream = launch_stream(device);
  BadPositionFlag bad(device, stream);
  dispatch_cuda_numeric(weight.dtype(), op, [&]<typename W>() {
    dispatch_index(ids.dtype(), op, [&]<typename I>() {
      const I* ip = static_cast<const I*>(id.raw_data());
      embedding_forward_kernel<W, I><<<static_cast<unsigned>(std::min(n, kMaxBlocks)), threads_for_row(C), 0, stream>>>(
          static_cast<const W*>(weight.raw_data()), weight.stride(0), weight.stride(1), V, C, ip, n,
          static_cast<W*>(out.raw_data()), bad.device_ptr());
      SL_CUDA_CHECK(cudaGetLastError());
      // See NOTE [bad-input flags] (reduce_internal.cuh): embedding runs once per step, so this
      // synchronizing check costs one wait per step and lets the error name the bad id.
      const int64_t t = bad.first_bad();
      if (t >= 0) fail_bad_id(op, ip, t, V, weight.shape(), ids.shape(), stream);
    });
  });
  return out;
}

Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_embeddings) {
  const char* op = "embedding_backward";
  check_on_cuda(op, {grad, ids});
  check_float(op, grad);
  SL_CHECK(num_embeddings >= 0, "embedding_backward: num_embeddings must be >= 0, got ", num_embeddings);
  const Shape& expect = ids.shape();
  SL_CHECK(grad.dim() == ids.dim() + 1 && std::equal(expect.begin(), expect.end(), grad.shape().begin()),
           "embedding_backward: grad of shape ", shape_str(grad.shape()), " does not match ids of shape ",
           shape_str(ids.shape()), " plus an embedding dim");
  check_ids_dtype(op, ids);
  const int64_t V = num_embeddings, C = grad.size(-1);
  const Tensor id = ops::contiguous(ids);
  const Tensor g = ops::contiguous(grad);  // (n, C)
  const int64_t n = id.numel();
  const Device device = grad.device();
  Tensor out = Tensor::empty({V, C}, grad.dtype(), device);
  if (n == 0) {  // no tokens: all zeros (and no ids to check)
    cudaStream_t stream = launch_stream(device);
    if (out.numel() > 0) SL_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, static_cast<size_t>(out.nbytes()), stream));
    return out;
  }
  cudaStream_t stream = launch_stream(device);
  BadPositionFlag bad(device, stream);
  // Scratch: keys and positions, their sorted copies, and cub's temporary storage.
  Tensor keys, sorted_keys, positions, sorted_positions, cub_temp;
  {
    MemTagScope scope(MemTag::workspace);
    keys = Tensor::empty({n}, DType::i64, device);
    sorted_keys = Tensor::empty({n}, DType::i64, device);
    positions = Tensor::empty({n}, DType::i64, device);
    sorted_positions = Tensor::empty({n}, DType::i64, device);
  }
  auto* kp = static_cast<uint64_t*>(keys.raw_data());
  auto* skp = static_cast<uint64_t*>(sorted_keys.raw_data());
  auto* pp = static_cast<int64_t*>(positions.raw_data());
  auto* spp = static_cast<int64_t*>(sorted_positions.raw_data());
  dispatch_index(ids.dtype(), op, [&]<typename I>() {
    sort_input_kernel<I><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const I*>(id.raw_data()), n, V,
                                                                        kp, pp, bad.device_ptr());
  });
  SL_CUDA_CHECK(cudaGetLastError());
  // Only the bits of V - 1 can differ between valid ids: sort on those alone (fewer passes).
  const int end_bit = std::max(1, static_cast<int>(std::bit_width(static_cast<uint64_t>(std::max<int64_t>(V - 1, 0)))));
  size_t temp_bytes = 0;
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kp, skp, pp, spp, n, 0, end_bit, stream));
  {
    MemTagScope scope(MemTag::workspace);
    cub_temp = Tensor::empty({static_cast<int64_t>(std::max<size_t>(temp_bytes, 1))}, DType::u8, device);
  }
  SL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_temp.raw_data(), temp_bytes, kp, skp, pp, spp, n, 0, end_bit,
                                                stream));
  if (V > 0 && C > 0) {
    dispatch_cuda_float(grad.dtype(), op, [&]<typename T>() {
      embedding_backward_kernel<T><<<static_cast<unsigned>(std::min(V, kMaxBlocks)), threads_for_row(C), 0, stream>>>(
          static_cast<const T*>(g.raw_data()), skp, spp, n, V, C, static_cast<T*>(out.raw_data()));
    });
    SL_CUDA_CHECK(cudaGetLastError());
  }
  // See NOTE [bad-input flags] (reduce_internal.cuh): one synchronizing check per backward step.
  const int64_t t = bad.first_bad();
  if (t >= 0)
    dispatch_index(ids.dtype(), op, [&]<typename I>() {
      fail_bad_id(op, static_cast<const I*>(id.raw_data()), t, V, Shape{V, C}, ids.shape(), stream);
    });
  return out;
}

}  // namespace shardlab::cuda::reduce_family

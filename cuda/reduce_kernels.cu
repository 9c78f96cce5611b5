// CUDA reductions behind the op API: sum, mean, max/argmax, max_backward and sum_of_squares; also
// registers the softmax family (softmax_kernels.cu). As in core/cpu/reduce.cc every reduction is
// brought to a contiguous (O, R, I) block reduced over R: rows (I == 1) and columns (I > 1) each
// get a kernel, and long reductions are split into partials in a way that depends only on the
// shape, combined in a fixed order (deterministic, no atomics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/ops/views.h"
#include "cuda/block_reduce.cuh"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/kernel_registry.h"
#include "cuda/reduce_internal.cuh"
#include "core/reduce_layout.h"

namespace shardlab::cuda {

using ops::ReduceLayout;
using ops::make_layout;
using ops::output_shape;
using ops::reduce_mask;

namespace {

using reduce_family::ceil_div;
using reduce_family::grid_1d;
using reduce_family::grid_for;
using reduce_family::launch_stream;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
// Rows up to this long get one warp each (8 rows per block); longer rows a block each.
constexpr int64_t kWarpRowMax = 512;
// Fewer independent outputs (rows, or column blocks) than this: R is split as well, so that the
// GPU has enough blocks.
constexpr int64_t kFewOutputs = 128;
// Elements of one partial of a split row.
constexpr int64_t kRowChunk = 32768;
// Most segments a column reduction's R is split into, and the fewest rows per segment.
constexpr int64_t kMaxSegments = 64;
constexpr int64_t kMinSegmentRows = 256;

__host__ __device__ inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- reducers: the state, how an element enters it, how two states combine, how it is stored ----

// The accumulator of a sum, as the CPU's: f32 in f64, 16-bit floats in f32, integers in i64.
template <typename T> struct SumAcc { using type = int64_t; };
template <> struct SumAcc<float> { using type = double; };
template <> struct SumAcc<double> { using type = double; };
template <> struct SumAcc<__nv_bfloat16> { using type = float; };
template <> struct SumAcc<__half> { using type = float; };

// out[k] = scale * sum (floats), sum (integers, Out = i64).
template <typename T, typename Out>
struct SumReducer {
  using Acc = typename SumAcc<T>::type;
  using State = Acc;
  Out* out;
  Acc scale;
  __device__ static State identity() { return Acc(0); }
  __device__ static State step(State s, T x, int64_t) { return s + static_cast<Acc>(to_acc(x)); }
  __device__ static State combine(State a, State b) { return a + b; }
  __device__ void store(State s, int64_t k) const {
    if constexpr (std::is_integral_v<Acc>) out[k] = static_cast<Out>(s);
    else out[k] = from_acc<Out>(s * scale);  // one rounding, as the CPU's
  }
};

// `v` beats `best`: larger, or NaN over a number (a NaN anywhere makes the max NaN, like torch).
template <typename A>
__device__ inline bool beats(A v, A best) {
  return v > best || (v != v && best == best);
}

// values[k] / indices[k] = the max and its first index. Combining picks the larger value and, on
// ties (equal values, or both NaN), the smaller index, so any combination order gives the first
// maximum, as the CPU's sequential scan does.
template <typename T>
struct MaxReducer {
  using A = acc_t<T>;
  struct State {
    A v;
    int64_t i;  // < 0: empty (no element seen)
  };
  T* values;         // may be null (argmax)
  int64_t* indices;
  __device__ static State identity() { return State{A(0), -1}; }
  __device__ static State combine(State a, State b) {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    if (beats(b.v, a.v)) return b;
    if (beats(a.v, b.v)) return a;
    return b.i < a.i ? b : a;
  }
  __device__ static State step(State s, T x, int64_t r) { return combine(s, State{to_acc(x), r}); }
  __device__ void store(State s, int64_t k) const {
    if (values != nullptr) values[k] = from_acc<T>(s.v);  // exact: s.v came from a T
    indices[k] = s.i;
  }
};

template <typename Red>
struct CombineOf {
  __device__ typename Red::State operator()(typename Red::State a, typename Red::State b) const {
    return Red::combine(a, b);
  }
};

// ---- kernels ----

// Rows of a contiguous (O, R): one warp per row, kWarpsPerBlock rows per block.
template <typename T, typename Red>
__global__ void reduce_rows_warp(const T* in, int64_t O, int64_t R, Red red) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= O) return;  // the whole warp leaves together; no block barrier follows
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const T* p = in + row * R;
  typename Red::State s = Red::identity();
  for (int64_t r = lane; r < R; r += kWarpSize) s = Red::step(s, p[r], r);
  s = warp_allreduce(s, CombineOf<Red>{});
  if (lane == 0) red.store(s, row);
}

// Rows of a contiguous (O, R), each split into `chunks` chunks of chunk_len elements: block b
// reduces chunk b % chunks of row b / chunks, into partial[b] (or the output when partial is null,
// which needs chunks == 1).
template <typename T, typename Red>
__global__ void reduce_rows_block(const T* in, int64_t R, int64_t chunks, int64_t chunk_len, Red red,
                                  typename Red::State* partial) {
  const int64_t row = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const int64_t begin = c * chunk_len, end = min64(R, begin + chunk_len);
  const T* p = in + row * R;
  typename Red::State s = Red::identity();
  for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) s = Red::step(s, p[r], r);
  s = block_allreduce(s, CombineOf<Red>{}, Red::identity());
  if (threadIdx.x == 0) {
    if (partial != nullptr) partial[blockIdx.x] = s;
    else red.store(s, row);
  }
}

// Combines the `chunks` partials of each row (one block per row) and stores the result.
template <typename Red>
__global__ void finish_rows(const typename Red::State* partial, int64_t chunks, Red red) {
  const int64_t row = blockIdx.x;
  typename Red::State s = Red::identity();
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) s = Red::combine(s, partial[row * chunks + c]);
  s = block_allreduce(s, CombineOf<Red>{}, Red::identity());
  if (threadIdx.x == 0) red.store(s, row);
}

// Columns of a contiguous (O, R, I): one thread per column i, walking rows [r0, r1) of segment
// `seg` (reads are coalesced across i). Block b covers segment b % segments of column block
// (b / segments) % col_blocks of o = b / segments / col_blocks. With one segment the result is
// stored directly; otherwise into partial (O, segments, I).
template <typename T, typename Red>
__global__ void reduce_cols(const T* in, int64_t R, int64_t I, int64_t col_blocks, int64_t segments,
                            int64_t seg_rows, Red red, typename Red::State* partial) {
  const int64_t task = blockIdx.x;
  const int64_t seg = task % segments, oc = task / segments;
  const int64_t o = oc / col_blocks, i = (oc % col_blocks) * blockDim.x + threadIdx.x;
  if (i >= I) return;  // no barrier in this kernel
  const int64_t r0 = min64(R, seg * seg_rows), r1 = min64(R, r0 + seg_rows);
  const T* p = in + o * R * I + i;
  typename Red::State s = Red::identity();
  for (int64_t r = r0; r < r1; ++r) s = Red::step(s, p[r * I], r);
  if (partial != nullptr) partial[(o * segments + seg) * I + i] = s;
  else red.store(s, o * I + i);
}

// out[k] for k = o * I + i: the segments' partials of column (o, i) combined in segment order.
template <typename Red>
__global__ void finish_cols(const typename Red::State* partial, int64_t n, int64_t I, int64_t segments, Red red) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = k / I, i = k % I;
    typename Red::State s = Red::identity();
    for (int64_t seg = 0; seg < segments; ++seg) s = Red::combine(s, partial[(o * segments + seg) * I + i]);
    red.store(s, k);
  }
}

// Scratch of n states (bytes tagged workspace; freed in stream order after the kernels using it).
template <typename State>
Tensor state_buffer(int64_t n, Device device) {
  MemTagScope scope(MemTag::workspace);
  return Tensor::empty({n * static_cast<int64_t>(sizeof(State))}, DType::u8, device);
}

// Reduces the (O, R, I) block at `in` with `red`: picks the row or column kernels and whether to
// split R, from the shape alone.
template <typename T, typename Red>
void launch_reduce(const T* in, const ReduceLayout& L, const Red& red, Device device, const char* op) {
  using State = typename Red::State;
  const int64_t O = L.O, R = L.R, I = L.I;
  if (O * I == 0) return;
  cudaStream_t stream = launch_stream(device);
  Tensor scratch;
  if (I == 1) {
    if (R <= kWarpRowMax) {
      reduce_rows_warp<T, Red><<<grid_1d(ceil_div(O, kWarpsPerBlock), op), kThreads, 0, stream>>>(in, O, R, red);
    } else {
      const int64_t chunks = O < kFewOutputs ? ceil_div(R, kRowChunk) : 1;
      if (chunks == 1) {
        reduce_rows_block<T, Red><<<grid_1d(O, op), kThreads, 0, stream>>>(in, R, 1, R, red, nullptr);
      } else {
        scratch = state_buffer<State>(O * chunks, device);
        State* partial = static_cast<State*>(scratch.raw_data());
        reduce_rows_block<T, Red><<<grid_1d(O * chunks, op), kThreads, 0, stream>>>(in, R, chunks, kRowChunk, red,
                                                                                   partial);
        SL_CUDA_CHECK(cudaGetLastError());
        finish_rows<Red><<<grid_1d(O, op), kThreads, 0, stream>>>(partial, chunks, red);
      }
    }
  } else {
    // Narrow columns get a narrower block (a multiple of the warp size) so fewer threads idle.
    const int threads = static_cast<int>(std::min<int64_t>(kThreads, ceil_div(I, kWarpSize) * kWarpSize));
    const int64_t col_blocks = ceil_div(I, threads);
    const int64_t segments =
        O * col_blocks < kFewOutputs ? std::clamp<int64_t>(R / kMinSegmentRows, 1, kMaxSegments) : 1;
    const int64_t seg_rows = ceil_div(R, segments);
    State* partial = nullptr;
    if (segments > 1) {
      scratch = state_buffer<State>(O * segments * I, device);
      partial = static_cast<State*>(scratch.raw_data());
    }
    reduce_cols<T, Red><<<grid_1d(O * col_blocks * segments, op), threads, 0, stream>>>(in, R, I, col_blocks, segments,
                                                                                      seg_rows, red, partial);
    if (segments > 1) {
      SL_CUDA_CHECK(cudaGetLastError());
      finish_cols<Red><<<grid_for(O * I, kThreads), kThreads, 0, stream>>>(partial, O * I, I, segments, red);
    }
  }
  SL_CUDA_CHECK(cudaGetLastError());
}

// ---- ops ----

// Shared body of sum and mean: `mean` divides by the reduced count before the single rounding.
Tensor sum_or_mean(const char* op, const Tensor& t, const std::vector<int64_t>& dims, bool keepdim, bool mean) {
  reduce_family::check_on_cuda(op, {t});
  if (mean) check_float(op, t);
  const std::vector<bool> mask = reduce_mask(t, dims, op);
  const ReduceLayout L = make_layout(t, mask);
  const bool integral = !is_floating(t.dtype());
  Tensor out = Tensor::empty(L.keep_shape, integral ? DType::i64 : t.dtype(), t.device());
  const double scale = mean ? 1.0 / static_cast<double>(L.R) : 1.0;
  dispatch_cuda_numeric(t.dtype(), op, [&]<typename T>() {
    const T* in = static_cast<const T*>(L.src.raw_data());
    if constexpr (std::is_integral_v<T>) {
      launch_reduce(in, L, SumReducer<T, int64_t>{static_cast<int64_t*>(out.raw_data()), 1}, t.device(), op);
    } else {
      using Acc = typename SumAcc<T>::type;
      launch_reduce(in, L, SumReducer<T, T>{static_cast<T*>(out.raw_data()), static_cast<Acc>(scale)}, t.device(), op);
    }
  });
  return ops::view(out, output_shape(t, mask, keepdim));
}

Tensor sum_cuda(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean("sum", t, dims, keepdim, false);
}

Tensor mean_cuda(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean("mean", t, dims, keepdim, true);
}

ops::MaxResult max_impl(const char* op, const Tensor& t, int64_t dim, bool keepdim, bool want_values) {
  reduce_family::check_on_cuda(op, {t});
  const std::vector<bool> mask = reduce_mask(t, {dim}, op);
  const ReduceLayout L = make_layout(t, mask);
  SL_CHECK(L.R > 0, op, ": cannot reduce over dim ", dim, " of size 0 in a tensor of shape ", shape_str(t.shape()));
  ops::MaxResult res;
  res.indices = Tensor::empty(L.keep_shape, DType::i64, t.device());
  if (want_values) res.values = Tensor::empty(L.keep_shape, t.dtype(), t.device());
  dispatch_cuda_numeric(t.dtype(), op, [&]<typename T>() {
    const MaxReducer<T> red{want_values ? static_cast<T*>(res.values.raw_data()) : nullptr,
                            static_cast<int64_t*>(res.indices.raw_data())};
    launch_reduce(static_cast<const T*>(L.src.raw_data()), L, red, t.device(), op);
  });
  const Shape shape = output_shape(t, mask, keepdim);
  res.indices = ops::view(res.indices, shape);
  if (want_values) res.values = ops::view(res.values, shape);
  return res;
}

ops::MaxResult max_cuda(const Tensor& t, int64_t dim, bool keepdim) { return max_impl("max", t, dim, keepdim, true); }

Tensor argmax_cuda(const Tensor& t, int64_t dim, bool keepdim) {
  return max_impl("argmax", t, dim, keepdim, false).indices;
}

// out (O, R, I) zero but for out[o, idx[o, i], i] = grad[o, i]; out-of-range indices are flagged.
template <typename T>
__global__ void max_backward_kernel(const T* grad, const int64_t* idx, T* out, int64_t n, int64_t R, int64_t I,
                                    unsigned long long* bad) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx[k];
    if (r < 0 || r >= R) {
      reduce_family::flag_bad_position(bad, k);
      continue;
    }
    out[(k / I * R + r) * I + k % I] = grad[k];
  }
}

Tensor max_backward_cuda(const Tensor& grad, const Tensor& indices, const Shape& input_shape, int64_t dim, bool keepdim) {
  const char* op = "max_backward";
  reduce_family::check_on_cuda(op, {grad, indices});
  check_float(op, grad);
  SL_CHECK(indices.dtype() == DType::i64, op, ": indices must be i64, got ", dtype_name(indices.dtype()));
  const int64_t nd = static_cast<int64_t>(input_shape.size());
  const int64_t d = nd == 0 ? 0 : wrap_dim(dim, nd, op);
  Shape reduced = input_shape;
  if (nd > 0) reduced[d] = 1;
  Tensor g = keepdim || nd == 0 ? grad : ops::unsqueeze(grad, d);
  Tensor idx = keepdim || nd == 0 ? indices : ops::unsqueeze(indices, d);
  SL_CHECK(g.shape() == reduced && idx.shape() == reduced, op, ": gradient of shape ", shape_str(grad.shape()),
           " and indices of shape ", shape_str(indices.shape()), " do not fit an input of shape ",
           shape_str(input_shape), " reduced over dim ", dim);
  g = ops::contiguous(g);
  idx = ops::contiguous(idx);
  const Device device = grad.device();
  Tensor out = Tensor::empty(input_shape, grad.dtype(), device);
  int64_t O = 1, R = 1, I = 1;
  for (int64_t k = 0; k < nd; ++k) (k < d ? O : k == d ? R : I) *= input_shape[k];
  cudaStream_t stream = launch_stream(device);
  if (out.numel() > 0) SL_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, static_cast<size_t>(out.nbytes()), stream));
  if (O * I == 0) return out;
  reduce_family::BadPositionFlag bad(device, stream);
  const int64_t* ip = static_cast<const int64_t*>(idx.raw_data());
  dispatch_cuda_float(grad.dtype(), op, [&]<typename T>() {
    max_backward_kernel<T><<<grid_for(O * I, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(g.raw_data()), ip, static_cast<T*>(out.raw_data()), O * I, R, I, bad.device_ptr());
  });
  SL_CUDA_CHECK(cudaGetLastError());
  // See NOTE [bad-input flags] (reduce_internal.cuh): this waits for the stream.
  const int64_t k = bad.first_bad();
  if (k >= 0)
    SL_FAIL(op, ": index ", reduce_family::read_device_element(ip + k, stream), " is out of range for dim ", dim,
            " of size ", R);
  return out;
}

// ---- sum_of_squares: f64 partials of a fixed grid, then one block sums them in order ----

constexpr int64_t kSquaresPerThread = 16;  // elements per thread before the grid is capped
constexpr int64_t kMaxSquareBlocks = 1024;

template <typename T>
__global__ void squares_partial_kernel(const T* x, int64_t n, double* partial) {
  double acc = 0.0;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(to_acc(x[k]));
    acc += v * v;
  }
  acc = block_allreduce_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partial, int64_t n, double* out) {
  double acc = 0.0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += partial[k];
  acc = block_allreduce_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

double sum_of_squares_cuda(const Tensor& t) {
  const char* op = "sum_of_squares";
  reduce_family::check_on_cuda(op, {t});
  const Tensor x = ops::contiguous(t);
  const int64_t n = x.numel();
  return dispatch_cuda_float(t.dtype(), op, [&]<typename T>() -> double {
    if (n == 0) return 0.0;
    // The grid depends only on n, so the summation order (and the result) is the same every run.
    const int64_t blocks = std::clamp<int64_t>(ceil_div(n, kThreads * kSquaresPerThread), 1, kMaxSquareBlocks);
    cudaStream_t stream = launch_stream(t.device());
    MemTagScope scope(MemTag::workspace);
    Tensor scratch = Tensor::empty({blocks + 1}, DType::f64, t.device());
    double* partial = static_cast<double*>(scratch.raw_data());
    squares_partial_kernel<T><<<grid_1d(blocks, op), kThreads, 0, stream>>>(static_cast<const T*>(x.raw_data()), n,
                                                                          partial);
    SL_CUDA_CHECK(cudaGetLastError());
    sum_partials_kernel<<<1, kThreads, 0, stream>>>(partial, blocks, partial + blocks);
    SL_CUDA_CHECK(cudaGetLastError());
    return reduce_family::read_device_element(partial + blocks, stream);  // a double result must reach the host
  });
}

}  // namespace

void register_reduce_kernels(DeviceKernels& k) {
  k.sum = &sum_cuda;
  k.mean = &mean_cuda;
  k.max = &max_cuda;
  k.argmax = &argmax_cuda;
  k.max_backward = &max_backward_cuda;
  k.softmax = &reduce_family::softmax;
  k.log_softmax = &reduce_family::log_softmax;
  k.softmax_backward = &reduce_family::softmax_backward;
  k.log_softmax_backward = &reduce_family::log_softmax_backward;
  k.sum_of_squares = &sum_of_squares_cuda;
}

}  // namespace shardlab::cuda

// CUDA matmul behind the op API: batched, broadcasting, any-stride products on cuBLASLt
// (cuda/cublaslt_gemm.h), with the checks and semantics of the CPU kernel (core/cpu/matmul.cc).
// Host code only: the GEMM kernels are cuBLASLt's.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/checks.h"
#include "core/ops/views.h"
#include "core/strided.h"
#include "cuda/cublaslt_gemm.h"
#include "cuda/device.h"
#include "cuda/kernel_registry.h"
#include "cuda/stream.h"
#include "core/matmul_layout.h"

namespace shardlab::cuda {

using ops::batch_strides;
using ops::matmul_shapes;
using ops::MatmulShapes;
using ops::rows_collapse;

namespace {

// t itself when cuBLASLt can read its matrices in place (row-major or a transpose() view), else
// a contiguous copy (stepped slices, expanded rows).
Tensor gemm_operand(const Tensor& t) {
  return gemm_readable(t.size(-2), t.size(-1), t.stride(-2), t.stride(-1)) ? t : ops::contiguous(t);
}

// The broadcast batch split in two: the innermost dims whose strides form one arithmetic
// progression for a, b and c alike run as one strided-batched GEMM ("inner"); the remaining outer
// dims are looped over on the host. Uniform batches (the usual case, broadcast stride-0 dims
// included) have no outer dims at all.
struct BatchSplit {
  Shape outer_shape, a_outer, b_outer, c_outer;
  int64_t inner_count = 1;
  int64_t a_inner = 0, b_inner = 0, c_inner = 0;
};

BatchSplit split_batch(const Shape& batch, const Shape& a_bs, const Shape& b_bs, const Shape& c_bs) {
  // Size-1 dims index nothing; dropping them lets their neighbours merge.
  std::vector<size_t> dims;
  for (size_t d = 0; d < batch.size(); ++d)
    if (batch[d] != 1) dims.push_back(d);
  BatchSplit s;
  if (dims.empty()) return s;
  size_t first_inner = dims.size() - 1;  // index into dims
  const size_t last = dims.back();
  s.inner_count = batch[last];
  s.a_inner = a_bs[last];
  s.b_inner = b_bs[last];
  s.c_inner = c_bs[last];
  while (first_inner > 0) {
    const size_t d = dims[first_inner - 1], in = dims[first_inner];
    const bool merges = a_bs[d] == a_bs[in] * batch[in] && b_bs[d] == b_bs[in] * batch[in] &&
                        c_bs[d] == c_bs[in] * batch[in];
    if (!merges) break;
    s.inner_count *= batch[d];
    --first_inner;
  }
  for (size_t i = 0; i < first_inner; ++i) {
    const size_t d = dims[i];
    s.outer_shape.push_back(batch[d]);
    s.a_outer.push_back(a_bs[d]);
    s.b_outer.push_back(b_bs[d]);
    s.c_outer.push_back(c_bs[d]);
  }
  return s;
}

const char* byte_ptr(const Tensor& t, int64_t element_offset) {
  return static_cast<const char*>(t.raw_data()) + element_offset * dtype_size(t.dtype());
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  SL_CHECK(b_in.defined(), "matmul: argument 1 is an undefined tensor");
  check_same_device("matmul", a_in, b_in);
  const MatmulShapes shapes = matmul_shapes(a_in, b_in);
  const int64_t M = shapes.M, K = shapes.K, N = shapes.N;
  const Shape& a_batch = shapes.a_batch;
  const Shape& batch = shapes.batch;
  const Shape& out_shape = shapes.out;
  const Device device = a_in.device();
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), device);
  if (out.numel() == 0) return out;
  SL_CUDA_CHECK(cudaSetDevice(device.index));
  const cudaStream_t stream = compute_stream(device.index);
  if (K == 0) {  // an empty sum: zeros, as the CPU kernel (all-zero bytes are +0.0 in every float dtype)
    SL_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, static_cast<size_t>(out.nbytes()), stream));
    return out;
  }

  const Tensor a = gemm_operand(a_in), b = gemm_operand(b_in);
  const int64_t nbatch = shape_numel(batch);
  GemmProblem p;
  p.op = "matmul";
  p.dtype = a.dtype();
  p.N = N;
  p.K = K;
  p.a = {a.raw_data(), a.stride(-2), a.stride(-1), 0};
  p.b = {b.raw_data(), b.stride(-2), b.stride(-1), 0};
  p.c = out.raw_data();
  p.c_row_stride = N;

  // Linear-layer case: b is the same matrix for every batch entry and a's (batch..., M) rows are
  // evenly spaced, so the whole product is one tall (nbatch*M, K) @ (K, N) GEMM.
  const Shape a_bs = batch_strides(a, batch), b_bs = batch_strides(b, batch);
  const bool b_shared = std::all_of(b_bs.begin(), b_bs.end(), [](int64_t s) { return s == 0; });
  int64_t merged_rs = 0;
  if (b_shared && shape_numel(a_batch) == nbatch && rows_collapse(a, merged_rs) &&
      gemm_readable(nbatch * M, K, merged_rs, a.stride(-1))) {
    p.M = nbatch * M;
    p.a.row_stride = merged_rs;
    gemm(p, device.index, stream);
    return out;
  }

  // out is contiguous: its batch dims are strided by whole (M, N) matrices.
  Shape c_bs(batch.size(), 0);
  for (int64_t d = static_cast<int64_t>(batch.size()) - 1, step = M * N; d >= 0; --d) {
    c_bs[d] = step;
    step *= batch[d];
  }
  const BatchSplit split = split_batch(batch, a_bs, b_bs, c_bs);
  p.M = M;
  p.batch = split.inner_count;
  p.a.batch_stride = split.a_inner;
  p.b.batch_stride = split.b_inner;
  p.c_batch_stride = split.c_inner;
  const int64_t nouter = shape_numel(split.outer_shape);  // 1 for an empty shape
  for (int64_t o = 0; o < nouter; ++o) {
    p.a.data = byte_ptr(a, offset_of(o, split.outer_shape, split.a_outer));
    p.b.data = byte_ptr(b, offset_of(o, split.outer_shape, split.b_outer));
    p.c = const_cast<char*>(byte_ptr(out, offset_of(o, split.outer_shape, split.c_outer)));
    gemm(p, device.index, stream);
  }
  return out;
}

}  // namespace

void register_matmul_kernels(DeviceKernels& k) { k.matmul = &matmul; }

}  // namespace shardlab::cuda

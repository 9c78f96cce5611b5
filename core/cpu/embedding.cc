// CPU table lookup: embedding (gather rows of a (V, C) weight by integer ids) and its backward,
// a scatter-add that is deterministic because every weight row sums its tokens in token order.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/linalg.h"
#include "core/strided.h"
#include "core/trace.h"

namespace shardlab::ops {

namespace {

// Rows times columns below which lookups stay on one thread.
constexpr int64_t kParallelElements = 1 << 15;

// The ids in logical order as int64, each checked against [0, V); `op` and the shapes name the
// culprit in the error.
std::vector<int64_t> read_ids(const char* op, const Tensor& ids, int64_t V, const Shape& weight_shape) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(ids.numel()));
  dispatch_index(ids.dtype(), op, [&]<typename I>() {
    const I* p = static_cast<const I*>(ids.storage()->data());
    for_each_offset(ids.shape(), ids.strides(), ids.offset(), [&](int64_t off) { out.push_back(p[off]); });
  });
  for (size_t t = 0; t < out.size(); ++t)
    SL_CHECK(out[t] >= 0 && out[t] < V, op, ": id ", out[t], " at position ", t, " is out of range for ", V,
             " embeddings (weight shape ", shape_str(weight_shape), ", ids shape ", shape_str(ids.shape()), ")");
  return out;
}

// Element offsets of the first element of each row of t viewed as (rows, last dim).
std::vector<int64_t> row_offsets(const Tensor& t) {
  const Shape lead(t.shape().begin(), t.shape().end() - 1), lead_strides(t.strides().begin(), t.strides().end() - 1);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(shape_numel(lead)));
  for_each_offset(lead, lead_strides, t.offset(), [&](int64_t off) { out.push_back(off); });
  return out;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  SL_FORWARD_TO_DEVICE(embedding, weight.device(), weight, ids);
  SL_TRACE_OP("embedding", weight, ids);
  check_cpu("embedding", {weight, ids});
  check_same_device("embedding", weight, ids);
  check_dim("embedding", weight, 2, "weight");
  const int64_t V = weight.size(0), C = weight.size(1);
  const std::vector<int64_t> id = read_ids("embedding", ids, V, weight.shape());

  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  const int64_t n = static_cast<int64_t>(id.size());
  if (n == 0 || C == 0) return out;
  dispatch_numeric(weight.dtype(), "embedding", [&]<typename T>() {
    const T* w = static_cast<const T*>(weight.storage()->data()) + weight.offset();
    T* o = out.data<T>();
    const int64_t rs = weight.stride(0), cs = weight.stride(1);
#pragma omp parallel for schedule(static) if (n * C >= kParallelElements && !omp_in_parallel())
    for (int64_t t = 0; t < n; ++t) {
      const T* src = w + id[t] * rs;
      T* dst = o + t * C;
      if (cs == 1) std::memcpy(dst, src, static_cast<size_t>(C) * sizeof(T));
      else for (int64_t c = 0; c < C; ++c) dst[c] = src[c * cs];
    }
  });
  return out;
}

Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_embeddings) {
  SL_FORWARD_TO_DEVICE(embedding_backward, grad.device(), grad, ids, num_embeddings);
  SL_TRACE_OP("embedding_backward", grad, ids);
  check_cpu("embedding_backward", {grad, ids});
  check_same_device("embedding_backward", grad, ids);
  check_float("embedding_backward", grad);
  SL_CHECK(num_embeddings >= 0, "embedding_backward: num_embeddings must be >= 0, got ", num_embeddings);
  Shape expect = ids.shape();
  SL_CHECK(grad.dim() == ids.dim() + 1 &&
               std::equal(expect.begin(), expect.end(), grad.shape().begin()),
           "embedding_backward: grad of shape ", shape_str(grad.shape()), " does not match ids of shape ",
           shape_str(ids.shape()), " plus an embedding dim");
  const int64_t V = num_embeddings, C = grad.size(-1);
  const std::vector<int64_t> id = read_ids("embedding_backward", ids, V, Shape{V, C});
  Tensor out = Tensor::zeros({V, C}, grad.dtype(), grad.device());
  const int64_t n = static_cast<int64_t>(id.size());
  if (n == 0 || C == 0) return out;

  // Tokens grouped by id, each group in token order (a stable counting sort): row v of the
  // result is then sum over its group in that fixed order, whatever the thread count.
  std::vector<int64_t> start(static_cast<size_t>(V) + 1, 0), order(static_cast<size_t>(n));
  for (int64_t v : id) ++start[static_cast<size_t>(v) + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t t = 0; t < n; ++t) order[static_cast<size_t>(fill[static_cast<size_t>(id[t])]++)] = t;
  }
  const std::vector<int64_t> grad_rows = row_offsets(grad);
  const int64_t gcs = grad.stride(-1);

  dispatch_float(grad.dtype(), "embedding_backward", [&]<typename T>() {
    using A = acc_t<T>;
    const T* g = static_cast<const T*>(grad.storage()->data());
    T* o = out.data<T>();
#pragma omp parallel if (n * C >= kParallelElements && !omp_in_parallel())
    {
      std::vector<A> acc(static_cast<size_t>(C));
#pragma omp for schedule(dynamic, 64)
      for (int64_t v = 0; v < V; ++v) {
        const int64_t begin = start[v], end = start[v + 1];
        if (begin == end) continue;
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t k = begin; k < end; ++k) {
          const T* row = g + grad_rows[static_cast<size_t>(order[k])];
          if (gcs == 1) for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<A>(row[c]);
          else for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<A>(row[c * gcs]);
        }
        T* dst = o + v * C;
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c]);
      }
    }
  });
  return out;
}

}  // namespace shardlab::ops

// matmul_shapes: the argument checks and batch broadcast shared by the CPU and CUDA matmul.
#include "core/matmul_layout.h"

#include <algorithm>

#include "core/checks.h"
#include "core/error.h"

namespace shardlab::ops {

MatmulShapes matmul_shapes(const Tensor& a, const Tensor& b) {
  SL_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: both operands need at least 2 dims, got a of shape ",
           shape_str(a.shape()), " and b of shape ", shape_str(b.shape()));
  check_same_dtype("matmul", a, b);
  check_float("matmul", a);
  MatmulShapes s;
  s.M = a.size(-2);
  s.K = a.size(-1);
  s.N = b.size(-1);
  SL_CHECK(b.size(-2) == s.K, "matmul: inner dims mismatch: a of shape ", shape_str(a.shape()), " @ b of shape ",
           shape_str(b.shape()), " (", s.K, " != ", b.size(-2), ")");
  // Broadcast batch dims (numpy rules), with an error that shows both full shapes.
  s.a_batch = Shape(a.shape().begin(), a.shape().end() - 2);
  s.b_batch = Shape(b.shape().begin(), b.shape().end() - 2);
  s.batch = Shape(std::max(s.a_batch.size(), s.b_batch.size()), 1);
  for (size_t i = 0; i < s.batch.size(); ++i) {
    const int64_t sa = i < s.a_batch.size() ? s.a_batch[s.a_batch.size() - 1 - i] : 1;
    const int64_t sb = i < s.b_batch.size() ? s.b_batch[s.b_batch.size() - 1 - i] : 1;
    SL_CHECK(sa == sb || sa == 1 || sb == 1, "matmul: batch dims of a of shape ", shape_str(a.shape()),
             " and b of shape ", shape_str(b.shape()), " cannot be broadcast");
    s.batch[s.batch.size() - 1 - i] = sa == 1 ? sb : sa;
  }
  s.out = s.batch;
  s.out.push_back(s.M);
  s.out.push_back(s.N);
  return s;
}

}  // namespace shardlab::ops

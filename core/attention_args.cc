// check_attention_args (see core/attention_args.h).
#include "core/attention_args.h"

#include <cmath>

#include "core/checks.h"
#include "core/error.h"

namespace shardlab::ops {

AttentionDims check_attention_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const AttentionOptions& options) {
  check_dim(op, q, 4, "q (B, Hq, T, D)");
  check_dim(op, k, 4, "k (B, Hkv, S, D)");
  check_dim(op, v, 4, "v (B, Hkv, S, D)");
  check_float(op, q);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  SL_CHECK(k.shape() == v.shape(), op, ": k ", shape_str(k.shape()), " and v ", shape_str(v.shape()),
           " must have the same shape (B, Hkv, S, D)");
  SL_CHECK(q.size(0) == k.size(0) && q.size(3) == k.size(3), op, ": q ", shape_str(q.shape()), " and k ",
           shape_str(k.shape()), " must agree in batch size and head dim (q (B, Hq, T, D), k (B, Hkv, S, D))");
  AttentionDims d;
  d.B = q.size(0), d.Hq = q.size(1), d.T = q.size(2), d.D = q.size(3);
  d.Hkv = k.size(1), d.S = k.size(2);
  SL_CHECK(d.Hkv > 0 && d.Hq % d.Hkv == 0, op, ": q ", shape_str(q.shape()), " has ", d.Hq,
           " heads, which is not a multiple of the ", d.Hkv, " heads of k/v ", shape_str(k.shape()));
  d.scale = options.scale.value_or(d.D > 0 ? 1.0 / std::sqrt(static_cast<double>(d.D)) : 1.0);
  SL_CHECK(std::isfinite(d.scale), op, ": scale must be finite, got ", d.scale);
  if (options.segment_ids.defined()) {
    const Tensor& ids = options.segment_ids;
    SL_CHECK(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, op, ": segment_ids must be i32 or i64, got ",
             dtype_name(ids.dtype()), " of shape ", shape_str(ids.shape()));
    SL_CHECK(ids.shape() == Shape({d.B, d.T}), op, ": segment_ids ", shape_str(ids.shape()),
             " must have shape (B, T) = ", shape_str({d.B, d.T}), " for q ", shape_str(q.shape()));
    SL_CHECK(d.T == d.S, op, ": segment_ids need as many queries as keys, got q ", shape_str(q.shape()), " and k ",
             shape_str(k.shape()));
  }
  return d;
}

}  // namespace shardlab::ops

// The differentiable op API users call: the same ops as core/ops.h, recording graph nodes when
// grad mode is on. Backward rules live next to their family in autograd/<family>.cc.
#pragma once

#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/ops.h"

namespace shardlab {

using ops::AttentionOptions;
using ops::Reduction;
using ops::RopeConfig;
using ops::RopeScaling;

// ---- views and layout (autograd/views.cc) ----
Tensor view(const Tensor& t, const Shape& shape);
Tensor reshape(const Tensor& t, const Shape& shape);
Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& t, const Shape& shape);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor contiguous(const Tensor& t);
Tensor clone(const Tensor& t);
Tensor to_dtype(const Tensor& t, DType dtype);

// ---- element-wise (autograd/elementwise.cc) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow_scalar(const Tensor& a, double exponent);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor silu(const Tensor& a);
Tensor gelu(const Tensor& a);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Comparisons are not differentiable; they are here so one namespace has every op.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);

// ---- reductions and softmax (autograd/reduce.cc, autograd/softmax.cc) ----
Tensor sum(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& t, int64_t dim, bool keepdim = false);  // values; gradient to the first max
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor softmax(const Tensor& t, int64_t dim);
Tensor log_softmax(const Tensor& t, int64_t dim);

// ---- matmul, embedding, joining (autograd/matmul.cc, embedding.cc, join.cc) ----
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim);

// ---- fused Llama ops (autograd/rms_norm.cc, rope.cc, swiglu.cc, attention.cc, cross_entropy.cc) ----
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
Tensor rope(const Tensor& x, const Tensor& positions, const RopeConfig& config);
Tensor swiglu(const Tensor& gate, const Tensor& up);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options = {});
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::mean);

}  // namespace shardlab

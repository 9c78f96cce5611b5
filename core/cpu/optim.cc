// CPU kernels for the fused optimizer updates and the squared norm used by clipping.
#include <cmath>
#include <string>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/ops/optim.h"
#include "core/strided.h"
#include "core/trace.h"
#include "core/optim_args.h"

namespace shardlab::ops {

namespace {
void check_update(const char* op, const Tensor& param, const Tensor& grad, const Tensor& state, DType state_dtype) {
  check_cpu(op, {param, grad, state});
  check_optimizer_update(op, param, grad, state, state_dtype);
}
DType state_dtype_for(DType param) { return optimizer_state_dtype(param); }
}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamWHyper& h) {
  SL_FORWARD_TO_DEVICE(adamw_step, param.device(), param, grad, m, v, h);
  SL_TRACE_OP("adamw_step", param);
  check_update("adamw_step", param, grad, m, state_dtype_for(param.dtype()));
  check_update("adamw_step", param, grad, v, state_dtype_for(param.dtype()));
  SL_CHECK(h.step >= 1, "adamw_step: step must be >= 1, got ", h.step);
  param.bump_version();
  m.bump_version();
  v.bump_version();
  dispatch_float(param.dtype(), "adamw_step", [&]<typename T>() {
    using S = acc_t<T>;  // state and math type
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    S* mm = m.data<S>();
    S* vv = v.data<S>();
    const S b1 = static_cast<S>(h.beta1), b2 = static_cast<S>(h.beta2);
    const S decay = static_cast<S>(1.0 - h.lr * h.weight_decay);
    const S step_size = static_cast<S>(h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(h.step))));
    const S inv_bc2_sqrt = static_cast<S>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step))));
    const S eps = static_cast<S>(h.eps);
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      S gi = static_cast<S>(g[i]);
      S pi = static_cast<S>(p[i]) * decay;
      S mi = b1 * mm[i] + (1 - b1) * gi;
      S vi = b2 * vv[i] + (1 - b2) * gi * gi;
      mm[i] = mi;
      vv[i] = vi;
      pi -= step_size * mi / (std::sqrt(vi) * inv_bc2_sqrt + eps);
      p[i] = static_cast<T>(pi);
    }
  });
}

namespace {
// The device SL_FORWARD_TO_DEVICE dispatches a tensor list on: its first tensor's (the CPU for an
// empty list or an undefined first entry, whose checks below then fail or do nothing).
Device list_device(const std::vector<Tensor>& ts) {
  return !ts.empty() && ts.front().defined() ? ts.front().device() : Device::cpu();
}
}  // namespace

void adamw_step_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                      const AdamWHyper& h) {
  SL_FORWARD_TO_DEVICE(adamw_step_multi, list_device(params), params, grads, exp_avgs, exp_avg_sqs, h);
  const char* op = "adamw_step_multi";
  SL_CHECK(grads.size() == params.size() && exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size(),
           op, ": got ", params.size(), " parameters, ", grads.size(), " gradients, ", exp_avgs.size(),
           " first moments and ", exp_avg_sqs.size(), " second moments; the lists must have equal lengths");
  SL_CHECK(h.step >= 1, op, ": step must be >= 1, got ", h.step);
  if (params.empty()) return;
  SL_TRACE_OP(op, params.front());
  // Every entry is checked before the first is written, so a bad entry leaves all of them as they were.
  const Device device = list_device(params);
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string what = std::string(op) + " (tensor " + std::to_string(i) + ")";
    const Tensor* args[] = {&params[i], &grads[i], &exp_avgs[i], &exp_avg_sqs[i]};
    const char* names[] = {"parameter", "gradient", "first moment", "second moment"};
    for (int k = 0; k < 4; ++k) {
      SL_CHECK(args[k]->defined(), what, ": the ", names[k], " is an undefined tensor");
      SL_CHECK(args[k]->device() == device, what, ": the ", names[k], " (shape ", shape_str(args[k]->shape()),
               ") is on ", args[k]->device().str(), " but the first parameter is on ", device.str(),
               "; all tensors must be on one device");
    }
    check_float(what.c_str(), params[i]);
    check_update(what.c_str(), params[i], grads[i], exp_avgs[i], state_dtype_for(params[i].dtype()));
    check_update(what.c_str(), params[i], grads[i], exp_avg_sqs[i], state_dtype_for(params[i].dtype()));
  }
  // The CPU has no launches to save: the per-tensor kernel, in list order.
  for (size_t i = 0; i < params.size(); ++i) adamw_step(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], h);
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdHyper& h) {
  SL_FORWARD_TO_DEVICE(sgd_step, param.device(), param, grad, momentum_buffer, h);
  SL_TRACE_OP("sgd_step", param);
  const bool use_momentum = h.momentum != 0.0;
  if (use_momentum) {
    SL_CHECK(momentum_buffer.defined(), "sgd_step: momentum ", h.momentum, " needs a momentum buffer");
    check_update("sgd_step", param, grad, momentum_buffer, state_dtype_for(param.dtype()));
    momentum_buffer.bump_version();
  } else {
    check_update("sgd_step", param, grad, grad, param.dtype());
  }
  param.bump_version();
  dispatch_float(param.dtype(), "sgd_step", [&]<typename T>() {
    using S = acc_t<T>;
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    S* buf = use_momentum ? momentum_buffer.data<S>() : nullptr;
    const S lr = static_cast<S>(h.lr), mu = static_cast<S>(h.momentum), wd = static_cast<S>(h.weight_decay);
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      S pi = static_cast<S>(p[i]);
      S d = static_cast<S>(g[i]) + wd * pi;
      if (use_momentum) {
        S b = h.first_step ? d : mu * buf[i] + d;
        buf[i] = b;
        d = h.nesterov ? d + mu * b : b;
      }
      p[i] = static_cast<T>(pi - lr * d);
    }
  });
}

double sum_of_squares(const Tensor& t) {
  SL_FORWARD_TO_DEVICE(sum_of_squares, t.device(), t);
  check_cpu("sum_of_squares", {t});
  double total = 0.0;
  dispatch_float(t.dtype(), "sum_of_squares", [&]<typename T>() {
    const T* base = static_cast<const T*>(t.storage()->data());
    if (t.is_contiguous()) {
      const T* p = base + t.offset();
      const int64_t n = t.numel();
#pragma omp parallel for reduction(+ : total) schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) {
        double x = to_double(p[i]);
        total += x * x;
      }
    } else {
      for_each_offset(t.shape(), t.strides(), t.offset(), [&](int64_t off) {
        double x = to_double(base[off]);
        total += x * x;
      });
    }
  });
  return total;
}

}  // namespace shardlab::ops

// gradcheck (see gradcheck.h).
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "core/strided.h"

namespace shardlab {

namespace {
// sum_o <outputs_o, directions_o> in f64.
double projected(const std::vector<Tensor>& outputs, const std::vector<Tensor>& directions) {
  double total = 0.0;
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (!directions[o].defined()) continue;
    std::vector<double> y = outputs[o].to_double_vector(), v = directions[o].to_double_vector();
    for (size_t i = 0; i < y.size(); ++i) total += y[i] * v[i];
  }
  return total;
}
}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions options) {
  GradcheckResult result;
  std::vector<Tensor> checked;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) {
      SL_CHECK(t.dtype() == DType::f64, "gradcheck: inputs that require grad must be f64, got ", dtype_name(t.dtype()),
               " of shape ", shape_str(t.shape()));
      checked.push_back(t);
    }
  SL_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  // Analytic: v^T J through the engine.
  std::vector<Tensor> outputs = fn(inputs);
  std::vector<Tensor> directions(outputs.size()), roots, root_grads;
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (!outputs[o].defined() || !is_floating(outputs[o].dtype())) continue;
    directions[o] = Tensor::randn(outputs[o].shape(), options.seed + o, DType::f64);
    if (outputs[o].requires_grad()) {
      roots.push_back(outputs[o]);
      root_grads.push_back(directions[o]);
    }
  }
  SL_CHECK(!roots.empty(), "gradcheck: no output depends on an input that requires grad");
  std::vector<Tensor> analytic = grad(roots, root_grads, checked);

  // Numerical: central differences, element by element, through each input's strides.
  NoGradGuard no_grad;
  for (size_t i = 0; i < checked.size(); ++i) {
    const Tensor& x = checked[i];
    std::vector<double> a = analytic[i].defined() ? analytic[i].to_double_vector()
                                                  : std::vector<double>(static_cast<size_t>(x.numel()), 0.0);
    double* base = static_cast<double*>(x.storage()->data());
    for (int64_t j = 0; j < x.numel(); ++j) {
      double& element = base[x.offset() + offset_of(j, x.shape(), x.strides())];
      const double original = element;
      element = original + options.eps;
      double plus = projected(fn(inputs), directions);
      element = original - options.eps;
      double minus = projected(fn(inputs), directions);
      element = original;
      double numeric = (plus - minus) / (2.0 * options.eps);
      ++result.elements_checked;
      double diff = std::abs(a[j] - numeric);
      if (!(diff <= options.atol + options.rtol * std::abs(numeric))) {
        std::ostringstream os;
        os << "input " << i << " (shape " << shape_str(x.shape()) << "), element " << j << ": analytic " << a[j]
           << ", numerical " << numeric << ", difference " << diff;
        result.ok = false;
        result.message = os.str();
        return result;
      }
    }
  }
  return result;
}

}  // namespace shardlab

// make_data_parallel: engine, optimizer and loss scaler from one description.
#include "distributed/data_parallel_setup.h"

#include "core/error.h"

namespace shardlab::dist {

namespace {

// Checks the options against the precision policy; build_engine makes the engine from them.
DataParallelSetup make_setup(const std::vector<Tensor>& params, DataParallelOptions options,
                             const nn::PrecisionPolicy& precision, const OptimizerFactory& make_optimizer,
                             const nn::LossScalerConfig& scaler_config,
                             const std::function<std::unique_ptr<DataParallelEngine>(DataParallelOptions)>& build_engine) {
  SL_CHECK(!options.reduce_dtype || *options.reduce_dtype == precision.reduce_dtype, "data parallel: reduce dtype ",
           dtype_name(*options.reduce_dtype), " in the options but ", dtype_name(precision.reduce_dtype),
           " in the precision policy");
  options.reduce_dtype = precision.reduce_dtype;
  for (const Tensor& p : params)
    SL_CHECK(!p.requires_grad() || p.dtype() == precision.param_dtype, "data parallel: a trained parameter of shape ",
             shape_str(p.shape()), " is ", dtype_name(p.dtype()), " but the precision policy says ",
             dtype_name(precision.param_dtype), " (convert the model first)");
  DataParallelSetup s;
  s.engine = build_engine(options);
  s.optimizer = make_optimizer(s.engine->optimizer_params());
  SL_CHECK(s.optimizer != nullptr, "data parallel: the optimizer factory returned nothing");
  if (precision.loss_scaling) s.scaler = std::make_unique<nn::DynamicLossScaler>(scaler_config);
  return s;
}

}  // namespace

DataParallelSetup make_data_parallel(const std::vector<Tensor>& params, ProcessGroup& group,
                                     DataParallelOptions options, const nn::PrecisionPolicy& precision,
                                     const OptimizerFactory& make_optimizer, const nn::LossScalerConfig& scaler_config) {
  return make_setup(params, std::move(options), precision, make_optimizer, scaler_config, [&](DataParallelOptions o) {
    return std::make_unique<DataParallelEngine>(params, group, std::move(o));
  });
}

DataParallelSetup make_data_parallel(nn::Module& model, ProcessGroup& group, DataParallelOptions options,
                                     const nn::PrecisionPolicy& precision, const OptimizerFactory& make_optimizer,
                                     const nn::LossScalerConfig& scaler_config) {
  return make_setup(model.parameters(), std::move(options), precision, make_optimizer, scaler_config,
                    [&](DataParallelOptions o) { return std::make_unique<DataParallelEngine>(model, group, std::move(o)); });
}

}  // namespace shardlab::dist

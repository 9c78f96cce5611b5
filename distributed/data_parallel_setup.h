// One call that builds a data-parallel training set-up from a built model: the engine, the
// optimizer over its shards and (fp16) the loss scaler, with the precision policy's reduce dtype.
//
//   auto dp = dist::make_data_parallel(model, group, options, precision,
//       [&](std::vector<Tensor> p) { return std::make_unique<nn::AdamW>(std::move(p), lr); });
//   train::Trainer trainer(model, *dp.optimizer, data, trainer_options, eval_fn,
//                          {nullptr, dp.scaler.get()}, dp.engine.get());
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "distributed/data_parallel.h"
#include "nn/loss_scaler.h"
#include "nn/precision_policy.h"

namespace shardlab::dist {

using OptimizerFactory = std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor> params)>;

struct DataParallelSetup {
  std::unique_ptr<DataParallelEngine> engine;
  std::unique_ptr<nn::Optimizer> optimizer;      // steps engine->optimizer_params()
  std::unique_ptr<nn::DynamicLossScaler> scaler;  // fp16 (precision.loss_scaling) only
};

// The parameters must already be in precision.param_dtype. options.reduce_dtype, when unset, is
// taken from precision.reduce_dtype; when both are set they must agree.
// Not for zero3 / hybrid_shard, which need the model: use the overload below.
DataParallelSetup make_data_parallel(const std::vector<Tensor>& params, ProcessGroup& group,
                                     DataParallelOptions options, const nn::PrecisionPolicy& precision,
                                     const OptimizerFactory& make_optimizer,
                                     const nn::LossScalerConfig& scaler_config = {});
// Every preset: the engine is built from the model (zero3 / hybrid_shard hook its decoder layers).
DataParallelSetup make_data_parallel(nn::Module& model, ProcessGroup& group, DataParallelOptions options,
                                     const nn::PrecisionPolicy& precision, const OptimizerFactory& make_optimizer,
                                     const nn::LossScalerConfig& scaler_config = {});

}  // namespace shardlab::dist

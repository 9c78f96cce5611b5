// What `shardlab train` and `shardlab bench` build the same way from a train config: the tokenizer,
// the precision policy, the tokenized train/validation samples, the loader options of a rank, the
// optimizer factory and the fp16 loss scaler's settings.
#pragma once

#include <memory>
#include <string>

#include "distributed/data_parallel_setup.h"
#include "models/data_loader.h"
#include "models/dataset.h"
#include "models/tokenizer.h"
#include "nn/loss_scaler.h"
#include "nn/precision_policy.h"
#include "tools/config/train_config.h"
#include "tools/trainer/trainer.h"

namespace shardlab::cli {

// "byte", or tokenizer.json from `tokenizer` (a file or its directory), else from base_model.
std::unique_ptr<models::Tokenizer> make_tokenizer(const config::TrainConfig& cfg);

// bf16/fp16 parameters and compute with fp32 masters (fp16: loss scaling), reduced in
// communication_data_type when given.
nn::PrecisionPolicy precision_from(const config::TrainConfig& cfg);

// The config's datasets, tokenized and split into train and validation samples (seeded by cfg.seed).
struct TrainingData {
  models::TrainValSplit split;
  models::LoadStats stats;
};
TrainingData load_training_data(const config::TrainConfig& cfg, const models::Tokenizer& tokenizer,
                                const std::string& config_path);

// Rank `rank` of `world_size` takes its rows of each global micro batch (NOTE [global batch layout]).
models::LoaderOptions loader_options(const config::TrainConfig& cfg, const models::Tokenizer& tokenizer, int rank,
                                     int world_size);

// The config's optimizer (adamw, adamw_8bit, sgd) with its hyper-parameters, over the given tensors.
dist::OptimizerFactory optimizer_factory(const config::TrainConfig& cfg);

// DeepSpeed's fp16 block, or its defaults.
nn::LossScalerConfig loss_scaler_config(const config::TrainConfig& cfg);

// Feeds the trainer from a DataLoader; the loader's position is the data state in checkpoints.
class LoaderStream final : public train::BatchStream {
 public:
  explicit LoaderStream(models::DataLoader& loader) : loader_(loader) {}
  train::MicroBatch next() override { return to_micro(loader_.next()); }
  json::Value state() const override { return loader_.position().to_json(); }
  void restore(const json::Value& state) override;
  int64_t epoch() const override { return loader_.position().epoch; }
  static train::MicroBatch to_micro(const models::Batch& b);

 private:
  models::DataLoader& loader_;
};

}  // namespace shardlab::cli

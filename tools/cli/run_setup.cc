// The shared pieces of `shardlab train` and `shardlab bench` (see run_setup.h).
#include "tools/cli/run_setup.h"

#include <filesystem>

#include "models/byte_tokenizer.h"
#include "nn/optimizer_8bit.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

std::unique_ptr<models::Tokenizer> make_tokenizer(const config::TrainConfig& cfg) {
  if (cfg.tokenizer == "byte") return std::make_unique<models::ByteTokenizer>();
  fs::path path = cfg.tokenizer.empty() ? fs::path(cfg.base_model) : fs::path(cfg.tokenizer);
  if (path.filename() == "tokenizer.json") path = path.parent_path();
  return models::load_tokenizer(path.string());
}

nn::PrecisionPolicy precision_from(const config::TrainConfig& cfg) {
  const bool bf16 = cfg.bf16 == config::Toggle::on, fp16 = cfg.fp16 == config::Toggle::on;
  std::optional<DType> reduce;
  if (!cfg.communication_data_type.empty())
    reduce = cfg.communication_data_type == "fp32" ? DType::f32 : cfg.communication_data_type == "bf16" ? DType::bf16 : DType::f16;
  return nn::make_precision_policy(bf16, fp16, reduce);
}

TrainingData load_training_data(const config::TrainConfig& cfg, const models::Tokenizer& tokenizer,
                                const std::string& config_path) {
  models::TextEncoder encoder;
  encoder.encode = [&](std::string_view text) { return tokenizer.encode(text, false); };
  if (tokenizer.add_bos_by_default()) encoder.bos_id = tokenizer.bos_id();
  encoder.eos_id = tokenizer.eos_id();
  encoder.pad_id = tokenizer.pad_id();
  std::vector<models::DatasetSpec> specs;
  for (const config::DatasetConfig& d : cfg.datasets) {
    models::DatasetSpec s;
    s.path = d.path;
    s.type = models::parse_dataset_type(config::to_string(d.type), d.path);
    s.field = d.field;
    s.field_instruction = d.field_instruction;
    s.field_input = d.field_input;
    s.field_output = d.field_output;
    s.field_system = d.field_system;
    s.system_prompt = d.system_prompt;
    s.format = d.format;
    s.no_input_format = d.no_input_format;
    s.system_format = d.system_format;
    specs.push_back(s);
  }
  models::TokenizedDataset data = models::load_datasets(specs, encoder, {cfg.sequence_len, cfg.train_on_inputs});
  SL_CHECK(!data.samples.empty(), config_path, ": the datasets produced no training samples");
  return {models::split_train_val(std::move(data.samples), cfg.val_set_size, static_cast<uint64_t>(cfg.seed)),
          data.stats};
}

models::LoaderOptions loader_options(const config::TrainConfig& cfg, const models::Tokenizer& tokenizer, int rank,
                                     int world_size) {
  models::LoaderOptions lo;
  lo.micro_batch_size = cfg.micro_batch_size;
  lo.sequence_len = cfg.sequence_len;
  lo.sample_packing = cfg.sample_packing;
  lo.pad_to_sequence_len = cfg.pad_to_sequence_len;
  lo.seed = static_cast<uint64_t>(cfg.seed);
  lo.pad_id = tokenizer.pad_id().value_or(0);
  lo.rank = rank;
  lo.world_size = world_size;
  return lo;
}

dist::OptimizerFactory optimizer_factory(const config::TrainConfig& cfg) {
  return [cfg](std::vector<Tensor> stepped) -> std::unique_ptr<nn::Optimizer> {
    switch (cfg.optimizer) {
      case config::OptimizerKind::sgd:
        return std::make_unique<nn::SGD>(std::move(stepped), cfg.learning_rate, 0.0, cfg.weight_decay);
      case config::OptimizerKind::adamw_8bit:
        return std::make_unique<nn::AdamW8bit>(std::move(stepped), cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2,
                                               cfg.adam_epsilon, cfg.weight_decay);
      case config::OptimizerKind::adamw:
        break;
    }
    return std::make_unique<nn::AdamW>(std::move(stepped), cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2,
                                       cfg.adam_epsilon, cfg.weight_decay);
  };
}

nn::LossScalerConfig loss_scaler_config(const config::TrainConfig& cfg) {
  nn::LossScalerConfig sc;
  sc.loss_scale = cfg.loss_scaler.loss_scale;
  sc.initial_scale_power = static_cast<int>(cfg.loss_scaler.initial_scale_power);
  sc.loss_scale_window = cfg.loss_scaler.loss_scale_window;
  sc.hysteresis = static_cast<int>(cfg.loss_scaler.hysteresis);
  sc.consecutive_hysteresis = cfg.loss_scaler.consecutive_hysteresis;
  sc.min_loss_scale = cfg.loss_scaler.min_loss_scale;
  return sc;
}

void LoaderStream::restore(const json::Value& state) {
  loader_.set_position(models::LoaderPosition::from_json(json::Ref(state, "trainer_state.json", "data")));
}

train::MicroBatch LoaderStream::to_micro(const models::Batch& b) {
  return {{b.input_ids, b.positions, b.segment_ids}, b.labels, b.num_target_tokens};
}

}  // namespace shardlab::cli

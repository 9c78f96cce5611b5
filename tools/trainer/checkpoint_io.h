// The trainer's two checkpoint layouts (TrainerOptions::state_dict_type): the gathered HF model of
// FULL_STATE_DICT, and the per-rank shards of SHARDED_STATE_DICT that any world size and preset
// resumes from (distributed/sharded_checkpoint.h). Called from Trainer::save/load_checkpoint.
#pragma once

#include <filesystem>

#include "distributed/data_parallel.h"
#include "models/llama.h"
#include "nn/master_weights.h"
#include "nn/optimizer.h"
#include "tools/trainer/trainer.h"

namespace shardlab::train {

// FULL_STATE_DICT's per-rank state: the engine's layout as trainer_state.json records it (preset,
// world size, bucket size), and each rank's optimizer state + fp32 master shard
// (optimizer-rank-R.safetensors) and data position (data-rank-R.json). Loading checks the layout.
json::Value data_parallel_json(const dist::DataParallelEngine& engine);
void save_rank_state(const std::filesystem::path& dir, const nn::Optimizer& optimizer,
                     const dist::DataParallelEngine& engine, const BatchStream& data);
void load_rank_state(const std::filesystem::path& dir, json::Ref trainer_state, nn::Optimizer& optimizer,
                     dist::DataParallelEngine& engine, BatchStream& data);

// FULL_STATE_DICT's model: config.json + model.safetensors in `dtype` into `dir` on rank 0. With an
// engine (collective) the trained parameters are gathered onto rank 0 one bucket at a time
// (dist::gather_full_parameters); frozen ones come from rank 0's model.
void write_full_model(const std::filesystem::path& dir, const models::LlamaForCausalLM& model,
                      const dist::DataParallelEngine* engine, DType dtype);

// SHARDED_STATE_DICT (collective with an engine): every rank writes shard-rank-R.safetensors and
// data-rank-R.json into `dir`; after a barrier rank 0 writes index.json and config.json (for
// `shardlab convert`). trainer_state.json is the caller's (rank 0).
void write_sharded_checkpoint(const std::filesystem::path& dir, const models::LlamaForCausalLM& model,
                              const nn::Optimizer& optimizer, const dist::DataParallelEngine* engine,
                              const BatchStream& data);

// Loads a sharded checkpoint saved by any world size and preset into this rank: its parameter
// ranges (fp32 masters for 16-bit runs), optimizer state and data position, then pushes them into
// the model (engine: update_parameters(), single process: masters_to_model()). The data position
// comes from this rank's data-rank-R.json at the same world size; at another world size every
// saved position must agree (a global position), else it is an error naming the files.
void load_sharded_checkpoint(const std::filesystem::path& dir, models::LlamaForCausalLM& model,
                             nn::Optimizer& optimizer, nn::MasterWeights* masters, dist::DataParallelEngine* engine,
                             BatchStream& data);

}  // namespace shardlab::train

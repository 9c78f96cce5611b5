// The trainer's FULL_STATE_DICT model export and SHARDED_STATE_DICT save/load (see checkpoint_io.h).
#include "tools/trainer/checkpoint_io.h"

#include <string>

#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "distributed/checkpoint_export.h"
#include "distributed/sharded_checkpoint.h"
#include "models/llama_io.h"

namespace shardlab::train {

namespace fs = std::filesystem;

namespace {

std::string rank_file(const char* stem, int rank, const char* ext) {
  return std::string(stem) + "-rank-" + std::to_string(rank) + ext;
}
std::string data_file(int rank) { return rank_file("data", rank, ".json"); }

void barrier(const dist::DataParallelEngine* engine) {
  if (engine != nullptr) engine->group().barrier()->wait();
}

dist::StateLayout layout_of(const models::LlamaForCausalLM& model, const nn::Optimizer& optimizer,
                            const dist::DataParallelEngine* engine) {
  return engine != nullptr ? dist::engine_state_layout(*engine, model.named_parameters())
                           : dist::single_process_state_layout(model.named_parameters(), optimizer.params());
}

void write_config(const fs::path& dir, const models::LlamaForCausalLM& model, DType dtype) {
  models::LlamaConfig config = model.config();
  config.torch_dtype = dtype;
  write_file_atomic((dir / "config.json").string(), json::dump_pretty(models::llama_config_to_json(config)) + "\n");
}

}  // namespace

// NOTE [data-parallel checkpoints]: each rank owns a different optimizer shard (and fp32 master
// shard) and reads different data, so each writes its own files; the model (gathered) and the
// trainer state (global figures) come from rank 0. A resume checks the layout it was saved with.
json::Value data_parallel_json(const dist::DataParallelEngine& engine) {
  json::Value v = json::Value::object();
  v.set("preset", std::string(dist::preset_name(engine.preset())));
  v.set("world_size", static_cast<int64_t>(engine.group().size()));
  v.set("reduce_bucket_size", engine.options().reduce_bucket_size);
  return v;
}

void save_rank_state(const fs::path& dir, const nn::Optimizer& optimizer, const dist::DataParallelEngine& engine,
                     const BatchStream& data) {
  const int rank = engine.group().rank();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : optimizer.state_dict()) tensors.emplace_back(name, t);
  for (auto& [name, t] : engine.master_state()) tensors.emplace_back(name, t);
  save_safetensors((dir / rank_file("optimizer", rank, ".safetensors")).string(), tensors);
  write_file_atomic((dir / data_file(rank)).string(), json::dump_pretty(data.state()) + "\n");
}

void load_rank_state(const fs::path& dir, json::Ref trainer_state, nn::Optimizer& optimizer,
                     dist::DataParallelEngine& engine, BatchStream& data) {
  const json::Value saved = trainer_state["data_parallel"].value();
  const json::Value now = data_parallel_json(engine);
  SL_CHECK(json::dump(saved) == json::dump(now), "resume: ", dir.string(), " was saved with data-parallel layout ",
           json::dump(saved), " but this run has ", json::dump(now), "; resume with the same preset, world size and ",
           "reduce_bucket_size");
  const int rank = engine.group().rank();
  const fs::path shard = dir / rank_file("optimizer", rank, ".safetensors");
  SL_CHECK(fs::exists(shard), "resume: ", shard.string(), " is missing");
  SafetensorsFile file = SafetensorsFile::open(shard.string());
  nn::NamedTensors optimizer_state, masters;
  for (const std::string& name : file.names())
    (name.rfind("master.", 0) == 0 ? masters : optimizer_state).emplace_back(name, file.get(name));
  optimizer.load_state_dict(optimizer_state);
  engine.load_master_state(masters);
  data.restore(json::parse_file((dir / data_file(rank)).string()));
}

void write_full_model(const fs::path& dir, const models::LlamaForCausalLM& model,
                      const dist::DataParallelEngine* engine, DType dtype) {
  if (engine == nullptr) {
    models::save_llama(model, dir.string(), dtype);
    return;
  }
  const nn::NamedTensors gathered = dist::gather_full_parameters(*engine, model.named_parameters(), dtype);
  if (engine->group().rank() != 0) return;
  std::vector<std::pair<std::string, Tensor>> tensors;
  size_t next = 0;  // gathered tensors come in the model's parameter order
  for (const auto& [name, param] : model.named_parameters()) {
    if (next < gathered.size() && gathered[next].first == name) tensors.emplace_back(name, gathered[next++].second);
    else tensors.emplace_back(name, ops::to_dtype(param, dtype));  // frozen: every rank holds it whole
  }
  SL_CHECK(next == gathered.size(), "full state dict: gathered parameter '", gathered[next].first,
           "' is not in the model's parameter order");
  fs::create_directories(dir);
  write_config(dir, model, dtype);
  save_safetensors((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

void write_sharded_checkpoint(const fs::path& dir, const models::LlamaForCausalLM& model,
                              const nn::Optimizer& optimizer, const dist::DataParallelEngine* engine,
                              const BatchStream& data) {
  const dist::StateLayout layout = layout_of(model, optimizer, engine);
  dist::write_state_shard(dir.string(), layout, optimizer);
  write_file_atomic((dir / data_file(layout.rank)).string(), json::dump_pretty(data.state()) + "\n");
  barrier(engine);  // every shard is on disk before rank 0 indexes them
  if (layout.rank != 0) return;
  dist::write_state_index(dir.string(), layout.world_size, layout.preset, optimizer.steps_taken());
  write_config(dir, model, DType::f32);  // the shards hold the stepped (fp32 master) values
}

void load_sharded_checkpoint(const fs::path& dir, models::LlamaForCausalLM& model, nn::Optimizer& optimizer,
                             nn::MasterWeights* masters, dist::DataParallelEngine* engine, BatchStream& data) {
  NoGradGuard no_grad;
  const dist::StateLayout layout = layout_of(model, optimizer, engine);
  dist::load_sharded_state(dir.string(), layout, optimizer);
  if (engine != nullptr) engine->update_parameters();
  else if (masters != nullptr) masters->masters_to_model();
  const dist::ShardedCheckpoint ckpt = dist::ShardedCheckpoint::open(dir.string());
  const int64_t saved_world = ckpt.index().at("world_size").as_int();
  if (saved_world == layout.world_size) {
    data.restore(json::parse_file((dir / data_file(layout.rank)).string()));
    return;
  }
  const json::Value first = json::parse_file((dir / data_file(0)).string());
  for (int64_t r = 1; r < saved_world; ++r)
    SL_CHECK(json::parse_file((dir / data_file(static_cast<int>(r))).string()) == first, "resume: ", dir.string(),
             " was saved by ", saved_world, " ranks with different data positions (", data_file(0), " vs ",
             data_file(static_cast<int>(r)), "); resuming on ", layout.world_size,
             " ranks needs one global position");
  data.restore(first);
}

}  // namespace shardlab::train

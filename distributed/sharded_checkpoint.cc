// Sharded checkpoints: which ranges each rank owns, writing a rank's shard file and the index,
// and loading any checkpoint into this rank's layout (see sharded_checkpoint.h).
#include "distributed/sharded_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/ops.h"

namespace shardlab::dist {

namespace fs = std::filesystem;

std::string shard_file_name(int rank) { return "shard-rank-" + std::to_string(rank) + ".safetensors"; }

namespace {

constexpr const char* kPiecesMetadata = "shardlab.pieces";

// The parameters the engine trains, in its order: trained, each tensor once.
nn::NamedTensors trained_parameters(const nn::NamedTensors& named) {
  nn::NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& [name, t] : named)
    if (t.requires_grad() && seen.insert(t.impl()).second) out.emplace_back(name, t);
  return out;
}

json::Value shape_json(const Shape& shape) {
  json::Value v = json::Value::array();
  for (int64_t d : shape) v.push_back(d);
  return v;
}

Tensor flat(const Tensor& t) { return ops::reshape(t, {t.numel()}); }

// A CPU copy for the writer (save_safetensors reads host memory); CPU tensors pass through.
Tensor on_host(const Tensor& t) {
  if (t.device() == Device::cpu()) return t;
  Tensor host = Tensor::empty(t.shape(), t.dtype());
  ops::copy_(host, t);
  return host;
}

// "<stepped>.<kind>" -> (stepped, kind); everything but "step" must be element-wise state.
struct OptimizerState {
  std::map<std::string, std::map<int, Tensor>> by_kind;
};
OptimizerState element_wise_state(const nn::Optimizer& optimizer, const std::vector<Tensor>& stepped) {
  OptimizerState out;
  for (const auto& [key, t] : optimizer.state_dict()) {
    if (key == "step") continue;
    const size_t dot = key.find('.');
    int index = -1;
    if (dot != std::string::npos) try {
        index = std::stoi(key.substr(0, dot));
      } catch (const std::exception&) {
      }
    SL_CHECK(index >= 0 && index < static_cast<int>(stepped.size()) && t.numel() == stepped[index].numel() &&
                 is_floating(t.dtype()),
             "sharded checkpoint: optimizer state '", key, "' (", dtype_name(t.dtype()), ", shape ",
             shape_str(t.shape()), ") is not one float per parameter element, so it cannot be cut into ranges; sharded checkpoints "
             "support AdamW and SGD state (8-bit AdamW's block-quantized state is not supported)");
    out.by_kind[key.substr(dot + 1)][index] = t;
  }
  for (const auto& [kind, per] : out.by_kind)
    SL_CHECK(per.size() == stepped.size(), "sharded checkpoint: optimizer state '", kind, "' exists for ", per.size(),
             " of the ", stepped.size(), " stepped tensors (step the optimizer once before saving, or not at all)");
  return out;
}

}  // namespace

StateLayout engine_state_layout(const DataParallelEngine& engine, const nn::NamedTensors& named) {
  const nn::NamedTensors trained = trained_parameters(named);
  const std::vector<ParameterShard> shards = engine.parameter_shards();
  SL_CHECK(shards.size() == trained.size(), "sharded checkpoint: the engine trains ", shards.size(),
           " parameters but the model has ", trained.size(), " trained ones");
  const std::vector<BucketLayout>& buckets = engine.buckets();
  const bool sharded = ShardingPlan::of(engine.preset()).shard_optimizer_state;
  const int shard_rank = engine.shard_group().rank();
  // Hybrid sharding: every shard group holds the same ranges; the first group alone writes them.
  const ProcessGroup* replicas = engine.sharded_units() != nullptr ? engine.sharded_units()->replicate_group() : nullptr;
  const bool writes = replicas == nullptr || replicas->rank() == 0;
  StateLayout layout;
  layout.stepped = engine.optimizer_params();
  layout.rank = engine.group().rank();
  layout.world_size = engine.group().size();
  layout.preset = preset_name(engine.preset());
  for (const ParameterShard& shard : shards) {
    const auto& [name, param] = trained[shard.param];
    SL_CHECK(shard.shape == param.shape() && (shard.name.empty() || shard.name == name),
             "sharded checkpoint: the engine's parameter ", shard.param, " ('", shard.name, "', ",
             shape_str(shard.shape), ") is not the model's trained parameter '", name, "' (", shape_str(param.shape()),
             "); build the engine on this model");
    ShardedParameter p{name, shard.shape, {}, {}};
    for (const OwnedRange& r : shard.owned) {
      const BucketLayout& L = buckets[r.bucket];
      // The stepped tensor is this rank's shard of the bucket (ZeRO) or the whole bucket (DDP).
      const int64_t stepped_offset = sharded ? r.bucket_offset - L.shard_offset(shard_rank) : r.bucket_offset;
      p.loaded.push_back({r.bucket, stepped_offset, r.param_offset, r.numel});
      if (sharded) {
        if (writes) p.written.push_back(p.loaded.back());
        continue;
      }
      // DDP: every rank holds everything; rank q writes what shard q of the bucket would hold.
      const int64_t lo = std::max(r.bucket_offset, L.shard_offset(layout.rank));
      const int64_t hi = std::min(r.bucket_offset + r.numel, L.shard_offset(layout.rank) + L.shard_numel);
      if (lo < hi) p.written.push_back({r.bucket, lo, r.param_offset + (lo - r.bucket_offset), hi - lo});
    }
    layout.params.push_back(std::move(p));
  }
  return layout;
}

StateLayout single_process_state_layout(const nn::NamedTensors& named, const std::vector<Tensor>& stepped) {
  const nn::NamedTensors trained = trained_parameters(named);
  SL_CHECK(trained.size() == stepped.size(), "sharded checkpoint: ", trained.size(), " trained parameters but the ",
           "optimizer steps ", stepped.size(), " tensors");
  StateLayout layout;
  layout.stepped = stepped;
  for (size_t i = 0; i < trained.size(); ++i) {
    SL_CHECK(stepped[i].numel() == trained[i].second.numel(), "sharded checkpoint: parameter '", trained[i].first,
             "' has ", trained[i].second.numel(), " elements but stepped tensor ", i, " has ", stepped[i].numel());
    const StateRange whole{static_cast<int>(i), 0, 0, stepped[i].numel()};
    layout.params.push_back({trained[i].first, trained[i].second.shape(), {whole}, {whole}});
  }
  return layout;
}

void write_state_shard(const std::string& dir, const StateLayout& layout, const nn::Optimizer& optimizer) {
  NoGradGuard no_grad;
  const OptimizerState state = element_wise_state(optimizer, layout.stepped);
  std::vector<std::pair<std::string, Tensor>> tensors;
  json::Value pieces = json::Value::array();
  auto add = [&](const std::string& tensor, const std::string& kind, const Shape& shape, const StateRange& r,
                 const Tensor& source) {
    const std::string name = kind.empty() ? tensor : kind + "/" + tensor;
    const std::string key = name + "@" + std::to_string(r.begin);
    tensors.emplace_back(key, on_host(ops::narrow(flat(source), 0, r.offset, r.numel)));
    json::Value piece = json::Value::object();
    piece.set("tensor", tensor);
    piece.set("state", kind);
    piece.set("shape", shape_json(shape));
    piece.set("begin", r.begin);
    piece.set("key", key);
    pieces.push_back(std::move(piece));
  };
  for (const ShardedParameter& p : layout.params)
    for (const StateRange& r : p.written) {
      add(p.name, "", p.shape, r, layout.stepped[r.stepped]);
      for (const auto& [kind, per] : state.by_kind) add(p.name, kind, p.shape, r, per.at(r.stepped));
    }
  save_safetensors((fs::path(dir) / shard_file_name(layout.rank)).string(), tensors,
                   {{kPiecesMetadata, json::dump(pieces)}});
}

void write_state_index(const std::string& dir, int world_size, const std::string& preset, int64_t optimizer_step) {
  json::Value parameters = json::Value::object();
  json::Value states = json::Value::object();
  json::Value files = json::Value::array();
  for (int r = 0; r < world_size; ++r) {
    const std::string file = shard_file_name(r);
    const fs::path path = fs::path(dir) / file;
    SL_CHECK(fs::exists(path), "sharded checkpoint: rank ", r, "'s ", path.string(), " is missing");
    files.push_back(file);
    SafetensorsFile shard = SafetensorsFile::open(path.string());
    const auto meta = shard.metadata().find(kPiecesMetadata);
    SL_CHECK(meta != shard.metadata().end(), "sharded checkpoint: ", path.string(), " has no '", kPiecesMetadata,
             "' metadata (not written by write_state_shard)");
    const json::Value listed = json::parse(meta->second, path.string());
    for (const json::Value& piece : listed.as_array()) {
      const std::string& key = piece.at("key").as_string();
      const std::string& kind = piece.at("state").as_string();
      json::Value* group = &parameters;
      if (!kind.empty()) {
        if (states.find(kind) == nullptr) states.set(kind, json::Value::object());
        group = states.as_object().find(kind);
      }
      const std::string& tensor = piece.at("tensor").as_string();
      if (group->find(tensor) == nullptr) {
        json::Value e = json::Value::object();
        e.set("shape", piece.at("shape"));
        e.set("dtype", shard.info(key).file_dtype);
        e.set("pieces", json::Value::array());
        group->set(tensor, std::move(e));
      }
      json::Value range = json::Value::object();
      const int64_t begin = piece.at("begin").as_int();
      range.set("file", file);
      range.set("key", key);
      range.set("begin", begin);
      range.set("end", begin + shard.info(key).shape.at(0));
      group->as_object().find(tensor)->as_object().find("pieces")->push_back(std::move(range));
    }
  }
  // Pieces in element order: readers then walk each tensor's ranges front to back.
  auto sort_pieces = [](json::Value& group) {
    for (json::Member& m : group.as_object()) {
      json::Array& p = m.value.as_object().find("pieces")->as_array();
      std::sort(p.begin(), p.end(),
                [](const json::Value& a, const json::Value& b) { return a.at("begin").as_int() < b.at("begin").as_int(); });
    }
  };
  sort_pieces(parameters);
  for (json::Member& m : states.as_object()) sort_pieces(m.value);
  json::Value index = json::Value::object();
  index.set("format", kShardedFormat);
  index.set("version", kShardedFormatVersion);
  index.set("world_size", static_cast<int64_t>(world_size));
  index.set("preset", preset);
  json::Value optimizer = json::Value::object();
  optimizer.set("step", optimizer_step);
  json::Value kinds = json::Value::array();
  for (const json::Member& m : states.as_object()) kinds.push_back(m.key);
  optimizer.set("state", std::move(kinds));
  index.set("optimizer", std::move(optimizer));
  index.set("files", std::move(files));
  index.set("parameters", std::move(parameters));
  index.set("optimizer_state", std::move(states));
  const std::string path = (fs::path(dir) / kShardedIndexFile).string();
  write_file_atomic(path, json::dump_pretty(index) + "\n");
  ShardedCheckpoint::open(dir);  // the tiling checks, before anyone relies on the directory
}

void load_sharded_state(const std::string& dir, const StateLayout& layout, nn::Optimizer& optimizer) {
  NoGradGuard no_grad;
  const ShardedCheckpoint ckpt = ShardedCheckpoint::open(dir);
  SL_CHECK(optimizer.params().size() == layout.stepped.size(), "sharded checkpoint: the optimizer steps ",
           optimizer.params().size(), " tensors but the layout has ", layout.stepped.size());
  std::unordered_set<std::string> expected;
  for (const ShardedParameter& p : layout.params) {
    expected.insert(p.name);
    SL_CHECK(ckpt.has_parameter(p.name), "resume: ", dir, " has no trained parameter '", p.name,
             "' (saved from another model, or with other parameters trained?)");
    SL_CHECK(ckpt.shape(p.name) == p.shape, "resume: parameter '", p.name, "' has shape ", shape_str(ckpt.shape(p.name)),
             " in ", dir, " but ", shape_str(p.shape), " in this model");
  }
  for (const std::string& name : ckpt.parameter_names())
    SL_CHECK(expected.count(name) != 0, "resume: ", dir, " holds parameter '", name,
             "' that this run does not train (a frozen or missing parameter)");
  for (const ShardedParameter& p : layout.params)
    for (const StateRange& r : p.loaded)
      ckpt.read_range(p.name, "", r.begin, ops::narrow(flat(layout.stepped[r.stepped]), 0, r.offset, r.numel));
  nn::NamedTensors state;
  state.emplace_back("step", Tensor::scalar(static_cast<double>(ckpt.optimizer_step()), DType::i64));
  for (const std::string& kind : ckpt.state_kinds()) {
    std::vector<Tensor> per;
    for (const Tensor& s : layout.stepped) {
      MemTagScope tag(MemTag::optimizer_state);
      per.push_back(Tensor::zeros(s.shape(), s.dtype(), s.device()));  // padding stays zero
    }
    for (const ShardedParameter& p : layout.params)
      for (const StateRange& r : p.loaded)
        ckpt.read_range(p.name, kind, r.begin, ops::narrow(flat(per[r.stepped]), 0, r.offset, r.numel));
    for (size_t i = 0; i < per.size(); ++i) state.emplace_back(std::to_string(i) + "." + kind, per[i]);
  }
  optimizer.load_state_dict(state);
  // An optimizer that ignored a kind would resume with fresh state: catch it here, not in the loss.
  for (const std::string& kind : ckpt.state_kinds()) {
    bool kept = false;
    for (const auto& [key, t] : optimizer.state_dict()) kept |= key == "0." + kind;
    SL_CHECK(kept || layout.stepped.empty(), "resume: ", dir, " holds optimizer state '", kind,
             "' that this run's optimizer does not use (saved with another optimizer)");
  }
}

}  // namespace shardlab::dist

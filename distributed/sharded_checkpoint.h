// Sharded checkpoints (SHARDED_STATE_DICT): every rank writes the pieces of the trained parameters
// and of their optimizer state that it owns, rank 0 writes an index, and any world size and preset
// (or one process) loads them back by reading, through the index, exactly the ranges it needs.
//
// NOTE [sharded checkpoint format] (version 1). A directory holding
//   shard-rank-R.safetensors  one per writing rank. Each tensor is one PIECE: the contiguous
//       element range [begin, end) of a tensor's row-major flattening, stored 1-D, unpadded, under
//       the key "<tensor>@<begin>" where <tensor> is the parameter's name ("model.norm.weight") or
//       "<state>/<parameter>" for optimizer state ("exp_avg/model.norm.weight"). Parameters are
//       stored in the precision the optimizer steps (fp32 masters of 16-bit runs, else the
//       parameter dtype), optimizer state as the optimizer keeps it. The file's metadata
//       "shardlab.pieces" lists its pieces with their tensors' global shapes.
//   index.json  written by rank 0 once every shard file is complete:
//       {"format": "shardlab-sharded", "version": 1, "world_size": W, "preset": "zero2",
//        "optimizer": {"step": S, "state": ["exp_avg", "exp_avg_sq"]},
//        "files": ["shard-rank-0.safetensors", ...],
//        "parameters": {NAME: {"shape": [..], "dtype": "F32",
//                              "pieces": [{"file": F, "key": K, "begin": B, "end": E}, ...]}},
//        "optimizer_state": {"exp_avg": {NAME: {same}}, ...}}
//       Pieces are sorted by begin and cover [0, numel) exactly (checked when written and read).
// Only trained parameters are stored (frozen ones, e.g. a LoRA run's base, come from the base
// model). Optimizer state must be element-wise (AdamW's exp_avg / exp_avg_sq, SGD's
// momentum_buffer): 8-bit AdamW's block-quantized state cannot be cut at arbitrary elements and
// is an error naming it. The trainer adds its own files (trainer_state.json, data positions) and
// makes the directory appear atomically (see tools/trainer/trainer.cc).
#pragma once

#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "distributed/data_parallel.h"
#include "nn/module.h"
#include "nn/optimizer.h"

namespace shardlab::dist {

inline constexpr const char* kShardedFormat = "shardlab-sharded";
inline constexpr int64_t kShardedFormatVersion = 1;
inline constexpr const char* kShardedIndexFile = "index.json";
std::string shard_file_name(int rank);  // "shard-rank-R.safetensors"

// Elements [begin, begin + numel) of a parameter's flattening live at [offset, offset + numel) of
// the optimizer's stepped tensor `stepped` (its parameter list's index; its state "<stepped>.<kind>").
struct StateRange {
  int stepped = 0;
  int64_t offset = 0;
  int64_t begin = 0;
  int64_t numel = 0;
};

struct ShardedParameter {
  std::string name;
  Shape shape;
  std::vector<StateRange> written;  // what this rank saves (the ranks' written ranges tile the parameter)
  std::vector<StateRange> loaded;   // what this rank holds and must fill when loading
};

// Where this rank's share of the training state lives: the optimizer's stepped tensors and which
// parameter elements sit where in them.
struct StateLayout {
  std::vector<ShardedParameter> params;
  std::vector<Tensor> stepped;  // the optimizer's params (masters, flat shards or the parameters)
  int rank = 0;
  int world_size = 1;
  std::string preset = "single_process";
};

// The engine's trained parameters with their names, from DataParallelEngine::parameter_shards()
// (every preset, ZeRO-3 and hybrid sharding included). `named` is the model's named_parameters()
// the engine was built on (frozen ones and repeated tied tensors are skipped the same way).
// ZeRO ranks write and load the ranges they own (hybrid: only the first shard group writes, as
// the others hold copies); DDP ranks load every bucket whole and rank r writes shard r of each.
StateLayout engine_state_layout(const DataParallelEngine& engine, const nn::NamedTensors& named);
// One process: the trained parameters of `named`, stepped as `stepped` (the same tensors, or their
// fp32 masters in the same order).
StateLayout single_process_state_layout(const nn::NamedTensors& named, const std::vector<Tensor>& stepped);

// Writes this rank's shard-rank-R.safetensors (its written ranges of parameters and optimizer state)
// into `dir`. Not collective.
void write_state_shard(const std::string& dir, const StateLayout& layout, const nn::Optimizer& optimizer);
// Rank 0, after every rank's write_state_shard: reads the shard files' headers, checks that the
// pieces tile every tensor, and writes index.json.
void write_state_index(const std::string& dir, int world_size, const std::string& preset, int64_t optimizer_step);

// An opened sharded checkpoint: index.json checked against the shard files it names.
class ShardedCheckpoint {
 public:
  // Errors name the directory and the culprit: a missing or truncated shard file, a piece the file
  // lacks, a gap or overlap in a tensor's ranges, an unknown format or version.
  static ShardedCheckpoint open(const std::string& dir);

  const json::Value& index() const { return index_; }
  std::vector<std::string> parameter_names() const;  // in index order
  std::vector<std::string> state_kinds() const;      // "exp_avg", ...
  int64_t optimizer_step() const;
  bool has_parameter(const std::string& name) const;
  Shape shape(const std::string& name) const;
  // Copies elements [begin, begin + out.numel()) of the tensor (a parameter, or `state` of it when
  // `state` is not empty) into the 1-D `out`, converting dtype, from whichever pieces hold them.
  void read_range(const std::string& name, const std::string& state, int64_t begin, const Tensor& out) const;
  // The whole parameter in `dtype`, with its global shape.
  Tensor read_parameter(const std::string& name, DType dtype) const;

 private:
  const json::Value& entry(const std::string& name, const std::string& state) const;
  std::string dir_;
  json::Value index_;
  std::vector<std::string> files_;
  std::vector<SafetensorsFile> shards_;
};

// Fills this rank's loaded ranges of the stepped tensors and the optimizer's state from `dir`
// (saved by any world size and preset). Every trained parameter must be in the checkpoint with the
// same shape. The caller then pushes the stepped values into the model (the engine's
// update_parameters(), or masters_to_model()).
void load_sharded_state(const std::string& dir, const StateLayout& layout, nn::Optimizer& optimizer);

}  // namespace shardlab::dist

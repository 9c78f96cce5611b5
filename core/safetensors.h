// The Hugging Face safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// ({name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}), then the tensor bytes.
// The reader validates the whole header up front; the writer lays files out as the safetensors
// library does and writes them atomically. Also the sharded "model.safetensors.index.json".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"

namespace shardlab {

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::f32;  // shardlab dtype the tensor loads as (BOOL loads as u8)
  std::string file_dtype;    // as written in the header: "F32", "BF16", "BOOL", ...
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data buffer (after the header)
  uint64_t end = 0;
};

// "F32", "BF16", ... for a shardlab dtype; throws for dtypes safetensors cannot hold (nf4).
const char* safetensors_dtype_name(DType dtype);

// One .safetensors file, memory-mapped read-only. Copies share the mapping.
class SafetensorsFile {
 public:
  // Validates everything; every error names the file and, where one is at fault, the tensor.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const;
  std::vector<std::string> names() const;  // in file (offset) order
  bool contains(std::string_view name) const;
  const SafetensorsTensorInfo& info(std::string_view name) const;
  // A fresh contiguous CPU tensor with the tensor's dtype and shape.
  Tensor get(std::string_view name) const;
  // The tensor's raw little-endian bytes inside the mapping (valid while any copy of this lives).
  std::string_view bytes(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const;

 private:
  SafetensorsFile() = default;  // only open() makes one, so state_ is never null
  struct State;
  std::shared_ptr<const State> state_;
};

// Writes `tensors` (any layout and device: made contiguous on the host one at a time while writing) to `path`
// atomically. Layout matches the safetensors library: tensors sorted by descending dtype
// alignment then by name, "__metadata__" first in the header (omitted when empty), the header
// padded with spaces to a multiple of 8 so every tensor starts aligned to its element size.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A checkpoint that may be sharded: either "model.safetensors.index.json" ({"metadata": {...},
// "weight_map": {tensor: shard file}}, shards resolved next to it) or a single .safetensors file.
// Each shard is opened once; lookups go straight to the shard that holds the tensor.
class SafetensorsCheckpoint {
 public:
  // `path` ends in ".json" for an index, anything else is one safetensors file.
  static SafetensorsCheckpoint open(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(std::string_view name) const;
  const SafetensorsTensorInfo& info(std::string_view name) const;
  Tensor get(std::string_view name) const;
  const std::string& shard_path(std::string_view name) const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // The index's "metadata" object (e.g. {"total_size": ...}); null for a single file.
  const json::Value& index_metadata() const { return index_metadata_; }

 private:
  const SafetensorsFile& shard_of(std::string_view name) const;

  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor name -> shard
  json::Value index_metadata_;
};

}  // namespace shardlab

// Sharded checkpoint -> model.safetensors, one tensor at a time (see checkpoint_convert.h).
#include "distributed/checkpoint_convert.h"

#include <algorithm>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "distributed/sharded_checkpoint.h"

namespace shardlab::dist {

namespace fs = std::filesystem;

int64_t convert_sharded_to_safetensors(const std::string& sharded_dir, const std::string& out_dir, DType dtype) {
  SL_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, "convert: output dtype ",
           dtype_name(dtype), " is not supported (f32, bf16 or f16)");
  const ShardedCheckpoint ckpt = ShardedCheckpoint::open(sharded_dir);
  std::vector<std::string> names = ckpt.parameter_names();
  for (const std::string& name : names)
    SL_CHECK(name.find(".lora_A.") == std::string::npos && name.find(".lora_B.") == std::string::npos,
             "convert: ", sharded_dir, " holds LoRA adapter weights ('", name, "'), not a model; its ",
             "adapter_model.safetensors + adapter_config.json is already the complete PEFT adapter ",
             "(`shardlab merge` folds it into the base model)");
  std::sort(names.begin(), names.end());  // one dtype: the safetensors library's order is by name
  // The header as the safetensors library lays it out: "__metadata__" first, then the tensors,
  // padded with spaces so the data starts 8-byte aligned.
  json::Value header = json::Value::object();
  json::Value meta = json::Value::object();
  meta.set("format", "pt");
  header.set("__metadata__", meta);
  const int64_t element = dtype_size(dtype);
  int64_t offset = 0;
  for (const std::string& name : names) {
    const Shape shape = ckpt.shape(name);
    json::Value info = json::Value::object();
    info.set("dtype", safetensors_dtype_name(dtype));
    json::Value dims = json::Value::array();
    int64_t numel = 1;
    for (int64_t d : shape) {
      dims.push_back(d);
      numel *= d;
    }
    info.set("shape", dims);
    json::Value offsets = json::Value::array();
    offsets.push_back(offset);
    offset += numel * element;
    offsets.push_back(offset);
    info.set("data_offsets", offsets);
    header.set(name, info);
  }
  std::string text = json::dump(header);
  text.append((8 - text.size() % 8) % 8, ' ');
  fs::create_directories(out_dir);
  AtomicFile file((fs::path(out_dir) / "model.safetensors").string());
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  file.write(length, 8);
  file.write(text);
  for (const std::string& name : names) {
    const Tensor t = ckpt.read_parameter(name, dtype);  // freed at the end of the iteration
    file.write(t.raw_data(), static_cast<size_t>(t.nbytes()));
  }
  file.commit();
  const fs::path config = fs::path(sharded_dir) / "config.json";
  if (fs::exists(config)) {
    json::Value c = json::parse_file(config.string());
    c.set("torch_dtype", std::string(dtype == DType::f32 ? "float32" : dtype == DType::bf16 ? "bfloat16" : "float16"));
    write_file_atomic((fs::path(out_dir) / "config.json").string(), json::dump_pretty(c) + "\n");
  }
  return static_cast<int64_t>(names.size());
}

}  // namespace shardlab::dist

// Hugging Face config.json and safetensors weights for Llama models.
#include "models/llama_io.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/ops.h"
#include "core/safetensors.h"

namespace shardlab::models {

namespace fs = std::filesystem;

LlamaConfig llama_config_from_json(const json::Value& value, const std::string& source) {
  json::Ref c(value, source);
  SL_CHECK(c.type() == json::Type::object, source, ": expected a JSON object");
  if (auto type = c.get("model_type"); type && !type->is_null())
    SL_CHECK(type->as_string() == "llama", source, ": model_type is '", type->as_string(),
             "', but only 'llama' models are supported");
  LlamaConfig out;
  out.vocab_size = c.get_int("vocab_size", out.vocab_size);
  out.hidden_size = c.get_int("hidden_size", out.hidden_size);
  out.intermediate_size = c.get_int("intermediate_size", out.intermediate_size);
  out.num_hidden_layers = c.get_int("num_hidden_layers", out.num_hidden_layers);
  out.num_attention_heads = c.get_int("num_attention_heads", out.num_attention_heads);
  out.num_key_value_heads = c.get_int("num_key_value_heads", out.num_attention_heads);
  out.head_dim = c.get_int("head_dim", 0);
  out.rms_norm_eps = c.get_double("rms_norm_eps", out.rms_norm_eps);
  out.rope_theta = c.get_double("rope_theta", out.rope_theta);
  out.max_position_embeddings = c.get_int("max_position_embeddings", out.max_position_embeddings);
  out.tie_word_embeddings = c.get_bool("tie_word_embeddings", false);
  out.initializer_range = c.get_double("initializer_range", out.initializer_range);
  out.torch_dtype = parse_dtype(c.get_string("torch_dtype", "float32"));
  for (auto [key, slot] : {std::pair{"bos_token_id", &out.bos_token_id}, std::pair{"eos_token_id", &out.eos_token_id},
                           std::pair{"pad_token_id", &out.pad_token_id}}) {
    auto v = c.get(key);
    if (!v || v->is_null()) continue;
    // Llama-3 instruct configs list several eos ids; the first is the one generation stops on.
    *slot = v->type() == json::Type::array ? (*v)[size_t{0}].as_int() : v->as_int();
  }
  if (auto rs = c.get("rope_scaling"); rs && !rs->is_null()) {
    std::string type = rs->has("rope_type") ? (*rs)["rope_type"].as_string() : rs->get_string("type", "");
    if (type != "default") {
      if (type != "llama3") rs->fail("has rope_type '" + type + "'; only 'llama3' scaling is supported");
      ops::RopeScaling s;
      s.factor = (*rs)["factor"].as_double();
      s.low_freq_factor = (*rs)["low_freq_factor"].as_double();
      s.high_freq_factor = (*rs)["high_freq_factor"].as_double();
      s.original_max_position_embeddings = (*rs)["original_max_position_embeddings"].as_int();
      out.rope_scaling = s;
    }
  }
  try {
    out.validate();
  } catch (const Error& e) {
    SL_FAIL(source, ": ", e.what());
  }
  return out;
}

LlamaConfig load_llama_config(const std::string& model_dir) {
  SL_CHECK(fs::is_directory(model_dir), "model directory '", model_dir, "' does not exist");
  const std::string path = (fs::path(model_dir) / "config.json").string();
  SL_CHECK(fs::exists(path), "model directory '", model_dir, "' has no config.json");
  return llama_config_from_json(json::parse_file(path), path);
}

json::Value llama_config_to_json(const LlamaConfig& c) {
  json::Value v = json::Value::object();
  v.set("architectures", json::Value(json::Array{json::Value("LlamaForCausalLM")}));
  v.set("model_type", "llama");
  v.set("vocab_size", c.vocab_size);
  v.set("hidden_size", c.hidden_size);
  v.set("intermediate_size", c.intermediate_size);
  v.set("num_hidden_layers", c.num_hidden_layers);
  v.set("num_attention_heads", c.num_attention_heads);
  v.set("num_key_value_heads", c.num_key_value_heads);
  v.set("head_dim", c.resolved_head_dim());
  v.set("hidden_act", "silu");
  v.set("rms_norm_eps", c.rms_norm_eps);
  v.set("rope_theta", c.rope_theta);
  v.set("max_position_embeddings", c.max_position_embeddings);
  v.set("tie_word_embeddings", c.tie_word_embeddings);
  v.set("initializer_range", c.initializer_range);
  v.set("attention_bias", false);
  v.set("mlp_bias", false);
  const char* dtype_names[] = {"float32", "float64", "bfloat16", "float16"};
  const int d = static_cast<int>(c.torch_dtype);
  v.set("torch_dtype", d < 4 ? dtype_names[d] : "float32");
  if (c.bos_token_id) v.set("bos_token_id", *c.bos_token_id);
  if (c.eos_token_id) v.set("eos_token_id", *c.eos_token_id);
  if (c.pad_token_id) v.set("pad_token_id", *c.pad_token_id);
  if (c.rope_scaling) {
    json::Value rs = json::Value::object();
    rs.set("rope_type", "llama3");
    rs.set("factor", c.rope_scaling->factor);
    rs.set("low_freq_factor", c.rope_scaling->low_freq_factor);
    rs.set("high_freq_factor", c.rope_scaling->high_freq_factor);
    rs.set("original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings);
    v.set("rope_scaling", rs);
  } else {
    v.set("rope_scaling", nullptr);
  }
  return v;
}

namespace {
std::string weights_path(const std::string& model_dir) {
  fs::path dir(model_dir);
  if (fs::exists(dir / "model.safetensors.index.json")) return (dir / "model.safetensors.index.json").string();
  SL_CHECK(fs::exists(dir / "model.safetensors"), "model directory '", model_dir,
           "' has neither model.safetensors nor model.safetensors.index.json");
  return (dir / "model.safetensors").string();
}
bool ignorable(const std::string& name, bool tied) {
  return name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight");
}
}  // namespace

void load_llama_weights(LlamaForCausalLM& model, const std::string& model_dir) {
  NoGradGuard no_grad;
  const std::string path = weights_path(model_dir);
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
  std::set<std::string> expected;
  for (auto& [name, param] : model.named_parameters()) {
    expected.insert(name);
    SL_CHECK(ckpt.contains(name), path, ": missing tensor '", name, "'");
    const SafetensorsTensorInfo& info = ckpt.info(name);
    SL_CHECK(info.shape == param.shape(), path, ": tensor '", name, "' has shape ", shape_str(info.shape),
             " but the model (from config.json) expects ", shape_str(param.shape()));
    SL_CHECK(is_floating(info.dtype), path, ": tensor '", name, "' has dtype ", info.file_dtype,
             "; expected a floating dtype");
    ops::copy_(param, ckpt.get(name));
  }
  for (const std::string& name : ckpt.names())
    SL_CHECK(expected.contains(name) || ignorable(name, model.config().tie_word_embeddings), path,
             ": unexpected tensor '", name, "' (not a parameter of this Llama config)");
}

std::unique_ptr<LlamaForCausalLM> load_llama(const std::string& model_dir, uint64_t seed) {
  auto model = std::make_unique<LlamaForCausalLM>(load_llama_config(model_dir), seed);
  load_llama_weights(*model, model_dir);
  return model;
}

void save_llama(const LlamaForCausalLM& model, const std::string& model_dir, DType dtype, int64_t max_shard_bytes) {
  fs::create_directories(model_dir);
  LlamaConfig config = model.config();
  config.torch_dtype = dtype;
  write_file_atomic((fs::path(model_dir) / "config.json").string(), json::dump_pretty(llama_config_to_json(config)) + "\n");
  // Tensors grouped into shards in parameter order.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (auto& [name, param] : model.named_parameters()) {
    Tensor t = ops::to_dtype(param, dtype);
    if (max_shard_bytes > 0 && shard_bytes > 0 && shard_bytes + t.nbytes() > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(name, t);
    shard_bytes += t.nbytes();
    total_bytes += t.nbytes();
  }
  if (shards.size() == 1) {
    save_safetensors((fs::path(model_dir) / "model.safetensors").string(), shards[0], {{"format", "pt"}});
    return;
  }
  json::Value weight_map = json::Value::object();
  char file[64];
  for (size_t k = 0; k < shards.size(); ++k) {
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    save_safetensors((fs::path(model_dir) / file).string(), shards[k], {{"format", "pt"}});
    for (auto& [name, t] : shards[k]) weight_map.set(name, std::string(file));
  }
  json::Value index = json::Value::object();
  json::Value meta = json::Value::object();
  meta.set("total_size", total_bytes);
  index.set("metadata", meta);
  index.set("weight_map", weight_map);
  // The index goes last: a reader never sees an index naming shards that are not there yet.
  write_file_atomic((fs::path(model_dir) / "model.safetensors.index.json").string(), json::dump_pretty(index) + "\n");
}

}  // namespace shardlab::models

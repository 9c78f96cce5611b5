// Quantizing a Llama's decoder projections to NF4, in place or while loading a checkpoint.
#include "models/llama_quantize.h"

#include <filesystem>
#include <set>

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "models/llama_io.h"
#include "nn/nf4_linear.h"

namespace shardlab::models {

namespace fs = std::filesystem;

namespace {

// Casts every parameter to `dtype` (keeping requires_grad) without touching buffers: Module::to
// would also cast the Nf4Linear f32 constants.
void cast_parameters(LlamaForCausalLM& model, DType dtype) {
  NoGradGuard no_grad;
  MemTagScope tag(MemTag::parameter);
  for (auto& [name, param] : model.named_parameters()) {
    if (param.dtype() == dtype) continue;
    const bool trainable = param.requires_grad();
    Tensor cast = ops::to_dtype(param, dtype);
    cast.set_requires_grad(trainable);
    model.replace_tensor(name, cast);
  }
}

std::string checkpoint_path(const std::string& model_dir) {
  const fs::path dir(model_dir);
  if (fs::exists(dir / "model.safetensors.index.json")) return (dir / "model.safetensors.index.json").string();
  SL_CHECK(fs::exists(dir / "model.safetensors"), "model directory '", model_dir,
           "' has neither model.safetensors nor model.safetensors.index.json");
  return (dir / "model.safetensors").string();
}

// A checkpoint tensor `name` after checking that it is there with `shape` and a floating dtype.
Tensor read_checked(const SafetensorsCheckpoint& ckpt, const std::string& path, const std::string& name,
                    const Shape& shape) {
  SL_CHECK(ckpt.contains(name), path, ": missing tensor '", name, "'");
  const SafetensorsTensorInfo& info = ckpt.info(name);
  SL_CHECK(info.shape == shape, path, ": tensor '", name, "' has shape ", shape_str(info.shape),
           " but the model (from config.json) expects ", shape_str(shape));
  SL_CHECK(is_floating(info.dtype), path, ": tensor '", name, "' has dtype ", info.file_dtype,
           "; expected a floating dtype");
  return ckpt.get(name);
}

}  // namespace

void quantize_llama_nf4(LlamaForCausalLM& model, DType compute_dtype) {
  NoGradGuard no_grad;
  for (int64_t i = 0; i < model.config().num_hidden_layers; ++i) {
    for (const char* projection : kLlamaProjections) {
      const std::string path = "model.layers." + std::to_string(i) + "." + projection;
      auto linear = std::dynamic_pointer_cast<nn::Linear>(model.child_ptr(path));
      SL_CHECK(linear != nullptr, "quantize_llama_nf4: '", path, "' is ",
               model.child_ptr(path) ? model.child_ptr(path)->type_name() : "missing",
               ", not a full-precision Linear (quantize before wrapping projections with LoRA, and only once)");
      const nn::NamedTensors params = linear->named_parameters();
      SL_CHECK(params.size() == 1, "quantize_llama_nf4: '", path, "' has a bias, which Nf4Linear does not support");
      auto quantized = nn::Nf4Linear::quantize(params[0].second, compute_dtype);
      model.replace_child(path, quantized);
    }
  }
  cast_parameters(model, compute_dtype);
}

std::unique_ptr<LlamaForCausalLM> load_llama_nf4(const std::string& model_dir, DType compute_dtype, uint64_t seed) {
  NoGradGuard no_grad;
  LlamaConfig config = load_llama_config(model_dir);
  // Everything that stays full precision is built (and then read) directly in the compute dtype.
  config.torch_dtype = compute_dtype;
  const std::string path = checkpoint_path(model_dir);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(path);
  std::set<std::string> consumed;
  auto quantize_from_checkpoint = [&](const std::string& name, int64_t in, int64_t out) {
    const std::string key = name + ".weight";
    // The one full-precision tensor alive at a time: freed when this returns.
    const Tensor weight = read_checked(ckpt, path, key, {out, in});
    consumed.insert(key);
    return std::static_pointer_cast<nn::UnaryModule>(nn::Nf4Linear::quantize(weight, compute_dtype));
  };
  auto model = std::make_unique<LlamaForCausalLM>(config, seed, quantize_from_checkpoint);
  for (auto& [name, param] : model->named_parameters()) {
    ops::copy_(param, read_checked(ckpt, path, name, param.shape()));
    consumed.insert(name);
  }
  for (const std::string& name : ckpt.names()) {
    const bool ignorable = name.ends_with("rotary_emb.inv_freq") ||
                           (config.tie_word_embeddings && name == "lm_head.weight");
    SL_CHECK(consumed.contains(name) || ignorable, path, ": unexpected tensor '", name,
             "' (not a parameter of this Llama config)");
  }
  return model;
}

}  // namespace shardlab::models

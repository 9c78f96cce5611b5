// shardlab merge --model DIR --adapter DIR --out DIR: folds a PEFT LoRA adapter into its base
// model (W += alpha/r * B A per adapted layer) and writes a plain Hugging Face checkpoint, with the
// base's tokenizer, that `shardlab eval/generate` and transformers load without PEFT.
#include <cstdio>
#include <filesystem>

#include "models/llama_io.h"
#include "models/peft_adapter.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

int run_merge(const std::vector<std::string>& argv) {
  Args args("merge", {{"model", true}, {"adapter", true}, {"out", true}}, argv);
  const std::string model_dir = args.required("model"), adapter_dir = args.required("adapter");
  const std::string out_dir = args.required("out");
  // Never write over a model (the base included): the output goes to a new or empty directory.
  SL_CHECK(!fs::exists(out_dir) || (fs::is_directory(out_dir) && fs::is_empty(out_dir)), "shardlab merge: --out '",
           out_dir, "' already has files; choose a new directory (nothing was changed)");

  // Everything is read and checked before the first write.
  auto model = models::load_llama(model_dir);
  const std::vector<std::string> wrapped = models::load_peft_adapter(*model, adapter_dir);
  const nn::LoraSettings settings = models::read_peft_config(adapter_dir);
  nn::merge_lora(*model);

  models::save_llama(*model, out_dir, model->config().torch_dtype);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(fs::path(model_dir) / f))
      fs::copy_file(fs::path(model_dir) / f, fs::path(out_dir) / f, fs::copy_options::overwrite_existing);
  std::printf("merged a LoRA adapter (r=%ld, alpha=%g, %zu modules) from %s into %s: %ld parameters written to %s\n",
              static_cast<long>(settings.r), settings.alpha, wrapped.size(), adapter_dir.c_str(), model_dir.c_str(),
              static_cast<long>(model->num_parameters()), out_dir.c_str());
  return 0;
}

}  // namespace shardlab::cli

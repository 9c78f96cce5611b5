// shardlab accuracy CONFIG.yaml|MODEL_DIR --data FILE.jsonl [--adapter DIR | --no-adapter]
// [--limit N] [--show N]: exact match of greedy answers on Alpaca records. Each record's prompt
// (the config's template, or the standard Alpaca one for a model directory) is decoded greedily
// until EOS and the text must equal the record's `output` byte for byte.
// The model: for a config without an adapter, the model it trained (output_dir); for a LoRA or
// QLoRA config, its base_model (4-bit NF4 with load_in_4bit, as trained) with the adapter from
// --adapter DIR or output_dir, or with none (--no-adapter: the "before" figure).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/json.h"
#include "models/dataset.h"
#include "models/generate.h"
#include "models/llama_io.h"
#include "models/peft_adapter.h"
#include "models/tokenizer.h"
#include "nn/precision_policy.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/train_adapter.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

namespace {

// The template and model a run is scored with.
struct Scored {
  models::DatasetSpec spec;  // how a record becomes a prompt
  std::unique_ptr<models::LlamaForCausalLM> model;
  std::unique_ptr<models::Tokenizer> tokenizer;
  std::string described;     // what was loaded, for the report
};

void require_model_dir(const std::string& dir, const std::string& what) {
  SL_CHECK(fs::exists(fs::path(dir) / "config.json"), what, ": no model in '", dir,
           "' (config.json is missing; train it first)");
}

void require_adapter_dir(const std::string& dir, const std::string& what) {
  SL_CHECK(fs::exists(fs::path(dir) / "adapter_config.json"), what, ": no adapter in '", dir,
           "' (adapter_config.json is missing; train it first)");
}

// From a config: the first dataset's template and the model the config trained, as described at
// the top of this file.
Scored from_config(const std::string& path, const Args& args) {
  const config::TrainConfig cfg = config::load_train_config(path);
  SL_CHECK(!cfg.datasets.empty(), path, ": has no datasets to take the prompt template from");
  const config::DatasetConfig& d = cfg.datasets.front();
  SL_CHECK(d.type != config::DatasetType::completion, path, ": datasets[0] (", d.path,
           ") is a completion data set; exact match needs an alpaca or custom prompt template");
  Scored s;
  s.spec.path = d.path;
  s.spec.type = models::parse_dataset_type(config::to_string(d.type), d.path);
  s.spec.field_instruction = d.field_instruction;
  s.spec.field_input = d.field_input;
  s.spec.field_output = d.field_output;
  s.spec.field_system = d.field_system;
  s.spec.system_prompt = d.system_prompt;
  s.spec.format = d.format;
  s.spec.no_input_format = d.no_input_format;
  s.spec.system_format = d.system_format;
  if (cfg.adapter.kind == config::AdapterKind::none) {
    SL_CHECK(!args.has("adapter") && !args.has("no-adapter"), path,
             ": has no adapter, so --adapter/--no-adapter do not apply (score the model it trained)");
    require_model_dir(cfg.output_dir, path);
    s.model = models::load_llama(cfg.output_dir);
    s.tokenizer = models::load_tokenizer(cfg.output_dir);
    s.described = cfg.output_dir;
    return s;
  }
  SL_CHECK(!cfg.base_model.empty(), path, ": an adapter config needs base_model to score");
  require_model_dir(cfg.base_model, path);
  s.tokenizer = models::load_tokenizer(cfg.base_model);
  const bool bf16 = cfg.bf16 == config::Toggle::on, fp16 = cfg.fp16 == config::Toggle::on;
  s.model = build_model(cfg, nn::make_precision_policy(bf16, fp16, std::nullopt), s.tokenizer->vocab_size(), path);
  s.described = cfg.base_model + (cfg.adapter.load_in_4bit ? " (4-bit NF4)" : "");
  if (!args.has("no-adapter")) {
    const std::string adapter = args.get("adapter", cfg.output_dir);
    require_adapter_dir(adapter, path);
    models::load_peft_adapter(*s.model, adapter);
    s.described += " + adapter " + adapter;
  }
  return s;
}

}  // namespace

int run_accuracy(const std::vector<std::string>& argv) {
  Args args("accuracy", {{"data", true}, {"limit", true}, {"show", true}, {"adapter", true}, {"no-adapter", false}},
            argv);
  SL_CHECK(args.positional().size() == 1, "shardlab accuracy: expected one CONFIG.yaml or MODEL_DIR, got ",
           args.positional().size(), " arguments");
  const std::string target = args.positional()[0];
  const std::string data_path = args.required("data");
  const int64_t limit = args.get_int("limit", 0), show = args.get_int("show", 3);
  SL_CHECK(limit >= 0 && show >= 0, "shardlab accuracy: '--limit' and '--show' must be >= 0");

  SL_CHECK(!(args.has("adapter") && args.has("no-adapter")), "shardlab accuracy: give --adapter or --no-adapter, not both");
  Scored scored;
  if (fs::is_directory(target)) {
    require_model_dir(target, "shardlab accuracy");
    scored.spec.path = data_path;
    scored.model = models::load_llama(target);
    scored.tokenizer = models::load_tokenizer(target);
    scored.described = target;
    if (args.has("adapter")) {
      require_adapter_dir(args.get("adapter", ""), "shardlab accuracy");
      models::load_peft_adapter(*scored.model, args.get("adapter", ""));
      scored.described += " + adapter " + args.get("adapter", "");
    }
  } else {
    scored = from_config(target, args);
  }
  models::LlamaForCausalLM& model = *scored.model;
  const models::Tokenizer* tokenizer = scored.tokenizer.get();

  std::vector<models::Record> records = models::load_records(data_path);
  if (limit > 0 && static_cast<int64_t>(records.size()) > limit) records.resize(static_cast<size_t>(limit));
  // Room for the longest expected answer plus a little, so a wrong answer cannot run on forever.
  std::vector<models::PromptParts> parts;
  int64_t longest = 0;
  for (const models::Record& r : records) {
    parts.push_back(models::format_record(scored.spec, r.value, r.where));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(tokenizer->encode(parts.back().response, false).size()));
  }
  models::GenerateOptions g;
  g.max_new_tokens = longest + 8;
  g.eos_id = tokenizer->eos_id();

  int64_t correct = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    // As the training data has it: [BOS] + prompt (the response follows).
    const std::vector<int64_t> prompt = tokenizer->encode(parts[i].prompt, tokenizer->add_bos_by_default());
    const std::string answer = tokenizer->decode(models::generate(model, prompt, g), /*skip_special=*/true);
    const bool match = answer == parts[i].response;
    correct += match ? 1 : 0;
    if (static_cast<int64_t>(i) < show)
      std::printf("%s %s: expected %s, got %s\n", match ? "ok  " : "miss", records[i].where.c_str(),
                  json::dump(json::Value(parts[i].response)).c_str(), json::dump(json::Value(answer)).c_str());
  }
  const double accuracy = parts.empty() ? 0.0 : static_cast<double>(correct) / static_cast<double>(parts.size());
  json::Value out = json::Value::object();
  out.set("accuracy", accuracy);
  out.set("correct", correct);
  out.set("total", static_cast<int64_t>(parts.size()));
  out.set("model", scored.described);
  out.set("data", data_path);
  std::printf("%s\n", json::dump(out).c_str());
  return 0;
}

}  // namespace shardlab::cli

// Parsing a train config: each section's keys into typed fields (config_reader.h does the reads),
// then the checks across keys that no single value can fail on its own.
#include "tools/config/train_config.h"

#include <algorithm>

#include "core/utf8.h"
#include "tools/config/deepspeed_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tools/config/adapter_config.h"
#include "tools/config/config_reader.h"
#include "tools/config/fsdp_config.h"

namespace shardlab::config {

namespace {

using detail::Field;
using detail::Reader;
using detail::Section;

enum class Range { positive, non_negative, unit_interval };  // > 0, >= 0, [0, 1)

void read_int(const Reader& rd, const Section& s, const char* key, int64_t min, int64_t& out) {
  if (const Field* f = s.find(key)) out = rd.integer(*f, min);
}

void read_bool(const Reader& rd, const Section& s, const char* key, bool& out) {
  if (const Field* f = s.find(key)) out = rd.boolean(*f);
}

void read_string(const Reader& rd, const Section& s, const char* key, std::string& out) {
  if (const Field* f = s.find(key)) out = rd.string(*f);
}

double checked_number(const Reader& rd, const Field& f, Range range) {
  const double v = rd.number(f);
  const bool ok = range == Range::positive       ? v > 0
                  : range == Range::non_negative ? v >= 0
                                                 : v >= 0 && v < 1;
  if (!ok) {
    const char* want = range == Range::positive ? "> 0" : range == Range::non_negative ? ">= 0" : "in [0, 1)";
    rd.fail_at(f.value, f.path + " must be " + want + ", got '" + f.value.Scalar() + "'");
  }
  return v;
}

void read_number(const Reader& rd, const Section& s, const char* key, Range range, double& out) {
  if (const Field* f = s.find(key)) out = checked_number(rd, *f, range);
}

Toggle read_toggle(const Reader& rd, const Field& f) {
  // true/false in any case, like every other switch; anything else lists the three choices.
  if (f.value.IsScalar()) {
    const std::string lower = detail::lowercase(f.value.Scalar());
    if (lower == "true") return Toggle::on;
    if (lower == "false") return Toggle::off;
  }
  return rd.choice<Toggle>(f, {{"true", Toggle::on}, {"false", Toggle::off}, {"auto", Toggle::automatic}});
}

// The later (by position) of two given keys, so a conflict points at the second one written.
const Field& later(const Field& a, const Field& b) {
  return a.key.Mark().pos >= b.key.Mark().pos ? a : b;
}

ModelConfigFields parse_model_config(const Reader& rd, const Field& field) {
  const Section s = rd.section(field.value, "model_config", detail::model_config_keys());
  ModelConfigFields m;
  const auto size = [&](const char* key, std::optional<int64_t>& out) {
    if (const Field* f = s.find(key)) out = rd.integer(*f, 1);
  };
  size("vocab_size", m.vocab_size);
  size("hidden_size", m.hidden_size);
  size("intermediate_size", m.intermediate_size);
  size("num_hidden_layers", m.num_hidden_layers);
  size("num_attention_heads", m.num_attention_heads);
  size("num_key_value_heads", m.num_key_value_heads);
  size("max_position_embeddings", m.max_position_embeddings);
  if (const Field* f = s.find("rope_theta")) m.rope_theta = checked_number(rd, *f, Range::positive);
  if (const Field* f = s.find("rms_norm_eps")) m.rms_norm_eps = checked_number(rd, *f, Range::positive);
  if (const Field* f = s.find("tie_word_embeddings")) m.tie_word_embeddings = rd.boolean(*f);

  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"})
    if (!s.find(key))
      rd.fail_at(field.key, std::string("model_config needs ") + key +
                                " (training from scratch has no base model to take it from)");
  if (*m.hidden_size % *m.num_attention_heads != 0)
    rd.fail_at(s.find("num_attention_heads")->value,
               "model_config.num_attention_heads (" + std::to_string(*m.num_attention_heads) +
                   ") must divide hidden_size (" + std::to_string(*m.hidden_size) + ")");
  if (m.num_key_value_heads && *m.num_attention_heads % *m.num_key_value_heads != 0)
    rd.fail_at(s.find("num_key_value_heads")->value,
               "model_config.num_key_value_heads (" + std::to_string(*m.num_key_value_heads) +
                   ") must divide num_attention_heads (" + std::to_string(*m.num_attention_heads) + ")");
  return m;
}

GenerateAfterTraining parse_generate(const Reader& rd, const Field& field) {
  const Section s = rd.section(field.value, "generate_after_training", detail::generate_keys());
  GenerateAfterTraining g;
  read_string(rd, s, "prompt", g.prompt);
  if (g.prompt.empty()) rd.fail_at(field.key, "generate_after_training needs a non-empty prompt");
  read_int(rd, s, "max_new_tokens", 1, g.max_new_tokens);
  return g;
}

// Checks a custom-format template the way models/prompt_format.cc fills it, so that a bad
// placeholder is reported with its line in the config rather than at the first record.
void check_template(const Reader& rd, const Field& f, bool allow_input) {
  const std::string t = rd.string(f);
  for (std::size_t i = 0; i < t.size(); ++i) {
    if ((t[i] == '{' || t[i] == '}') && i + 1 < t.size() && t[i + 1] == t[i]) {
      ++i;  // "{{" or "}}": a literal brace
    } else if (t[i] == '}') {
      rd.fail_at(f.value, f.path + " has a single '}' (write }} for a literal brace): '" + t + "'");
    } else if (t[i] == '{') {
      const std::size_t close = t.find('}', i + 1);
      if (close == std::string::npos) rd.fail_at(f.value, f.path + " has an unclosed '{': '" + t + "'");
      const std::string name = t.substr(i + 1, close - i - 1);
      if (name != "instruction" && name != "input" && name != "system")
        rd.fail_at(f.value, f.path + " has an unknown placeholder {" + name +
                                "} (use {instruction}, {input}, {system}; {{ and }} for literal braces)");
      if (name == "input" && !allow_input)
        rd.fail_at(f.value, f.path + " is for records without an input, so it cannot use {input}");
      i = close;
    }
  }
}

// Which dataset types read a key (the rest reject it rather than ignore it).
bool type_reads(DatasetType type, std::string_view key) {
  if (key == "field") return type == DatasetType::completion;
  if (type == DatasetType::custom) return true;
  return type == DatasetType::alpaca && (key == "field_instruction" || key == "field_input" ||
                                         key == "field_output" || key == "system_prompt");
}

// One datasets entry. The format keys may sit in the entry or, as Axolotl writes a custom format,
// in a map under `type:`.
DatasetConfig parse_dataset(const Reader& rd, const YAML::Node& node, const std::string& path) {
  const Section s = rd.section(node, path, detail::dataset_keys());
  DatasetConfig d;
  const Field* p = s.find("path");
  if (!p) rd.fail_at(node, path + " needs a path");
  d.path = rd.string(*p);
  if (d.path.empty()) rd.fail_at(p->value, path + ".path must not be empty");
  const Field* t = s.find("type");
  if (!t) rd.fail_at(node, path + " needs a type: alpaca, completion or custom");
  Section nested;
  if (t->value.IsMap()) {
    d.type = DatasetType::custom;
    nested = rd.section(t->value, path + ".type", detail::custom_format_keys());
  } else {
    d.type = rd.choice<DatasetType>(*t, {{"alpaca", DatasetType::alpaca}, {"completion", DatasetType::completion},
                            {"custom", DatasetType::custom}},
                       {"chat_template", "sharegpt", "input_output", "alpaca_chat", "alpaca_w_system",
                        "oasst", "pygmalion", "metharme", "context_qa", "explainchoice"});
  }
  // Local JSON files with one split are all there is; these keys may only say so.
  if (const Field* f = s.find("ds_type"); f && rd.string(*f) != "json")
    rd.fail_at(f->value, f->path + " must be json (only local .json/.jsonl files are supported), got '" +
                             f->value.Scalar() + "'");
  if (const Field* f = s.find("split"); f && rd.string(*f) != "train")
    rd.fail_at(f->value, f->path + " must be train (local files have one split), got '" + f->value.Scalar() + "'");

  const auto given = [&](const char* key) -> const Field* {
    const Field* flat = s.find(key);
    const Field* inner = nested.find(key);
    if (flat && inner) rd.fail_at(inner->key, path + "." + key + " is given twice: in the entry and under type");
    const Field* f = flat ? flat : inner;
    if (f && !type_reads(d.type, key))
      rd.fail_at(f->key, f->path + " is not used by datasets of type " + std::string(to_string(d.type)));
    return f;
  };
  for (auto [key, out] : {std::pair{"field", &d.field}, {"field_instruction", &d.field_instruction},
                          {"field_input", &d.field_input}, {"field_output", &d.field_output},
                          {"field_system", &d.field_system}}) {
    if (const Field* f = given(key)) {
      *out = rd.string(*f);
      if (out->empty()) rd.fail_at(f->value, f->path + " must name a column, got an empty string");
    }
  }
  if (const Field* f = given("system_prompt")) d.system_prompt = rd.string(*f);
  const Field* format = given("format");
  const Field* no_input = given("no_input_format");
  const Field* system_format = given("system_format");
  if (format) check_template(rd, *format, true), d.format = rd.string(*format);
  if (no_input) check_template(rd, *no_input, false), d.no_input_format = rd.string(*no_input);
  if (system_format) check_template(rd, *system_format, true), d.system_format = rd.string(*system_format);
  if (d.type == DatasetType::custom && d.format.empty())
    rd.fail_at(t->key, path + " has a custom type but no format (e.g. format: \"[INST] {instruction} {input} [/INST]\")");
  return d;
}

}  // namespace

TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source_name) {
  const Reader rd(source_name);
  // The resolved config is written back as YAML and must parse to the same values, which raw
  // non-UTF-8 bytes would not survive; reject them where they are.
  if (size_t bad = first_invalid_utf8(yaml_text); bad != std::string::npos) {
    const size_t line_start = yaml_text.rfind('\n', bad == 0 ? 0 : bad - 1);
    const size_t line = 1 + std::count(yaml_text.begin(), yaml_text.begin() + bad, '\n');
    const size_t column = bad - (line_start == std::string::npos ? 0 : line_start + 1) + 1;
    rd.fail("line " + std::to_string(line) + ", column " + std::to_string(column) + ": the text is not valid UTF-8");
  }
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    rd.fail(e.mark, "malformed YAML: " + e.msg);
  }
  if (root.IsNull())
    rd.fail("the config is empty (expected a map of settings: base_model, datasets, ...)");
  const Section top = rd.section(root, "", detail::top_level_keys());

  TrainConfig c;
  read_string(rd, top, "base_model", c.base_model);
  if (const Field* f = top.find("model_config")) c.model_config = parse_model_config(rd, *f);
  read_string(rd, top, "tokenizer", c.tokenizer);
  if (const Field* f = top.find("datasets")) {
    if (!f->value.IsSequence())
      rd.fail_at(f->value, "datasets must be a list of {path, type, ...} entries, got " + detail::describe(f->value));
    for (std::size_t i = 0; i < f->value.size(); ++i)
      c.datasets.push_back(parse_dataset(rd, f->value[i], "datasets[" + std::to_string(i) + "]"));
  }
  read_number(rd, top, "val_set_size", Range::non_negative, c.val_set_size);
  read_int(rd, top, "sequence_len", 1, c.sequence_len);
  read_bool(rd, top, "sample_packing", c.sample_packing);
  read_bool(rd, top, "pad_to_sequence_len", c.pad_to_sequence_len);
  read_bool(rd, top, "train_on_inputs", c.train_on_inputs);

  read_int(rd, top, "micro_batch_size", 1, c.micro_batch_size);
  read_int(rd, top, "gradient_accumulation_steps", 1, c.gradient_accumulation_steps);
  read_int(rd, top, "num_epochs", 0, c.num_epochs);
  read_int(rd, top, "max_steps", 0, c.max_steps);

  if (const Field* f = top.find("optimizer"))
    c.optimizer = rd.choice<OptimizerKind>(*f, {{"adamw", OptimizerKind::adamw}, {"adamw_torch", OptimizerKind::adamw},
                                 {"sgd", OptimizerKind::sgd}, {"adamw_8bit", OptimizerKind::adamw_8bit},
                                 {"adamw_bnb_8bit", OptimizerKind::adamw_8bit}},
                            {"adamw_torch_fused", "paged_adamw_8bit",
                             "paged_adamw_32bit", "adafactor", "lion_8bit", "adamw_hf"});
  read_number(rd, top, "learning_rate", Range::positive, c.learning_rate);
  read_number(rd, top, "weight_decay", Range::non_negative, c.weight_decay);
  read_number(rd, top, "adam_beta1", Range::unit_interval, c.adam_beta1);
  read_number(rd, top, "adam_beta2", Range::unit_interval, c.adam_beta2);
  read_number(rd, top, "adam_epsilon", Range::positive, c.adam_epsilon);
  if (const Field* f = top.find("lr_scheduler"))
    c.lr_scheduler = rd.choice<LrSchedulerKind>(*f, {{"constant", LrSchedulerKind::constant}, {"linear", LrSchedulerKind::linear},
                                    {"cosine", LrSchedulerKind::cosine}},
                               {"cosine_with_restarts", "polynomial", "constant_with_warmup", "inverse_sqrt",
                                "reduce_lr_on_plateau", "cosine_with_min_lr", "one_cycle", "rex"});
  read_int(rd, top, "warmup_steps", 0, c.warmup_steps);
  read_number(rd, top, "warmup_ratio", Range::unit_interval, c.warmup_ratio);
  read_number(rd, top, "max_grad_norm", Range::non_negative, c.max_grad_norm);
  read_int(rd, top, "seed", 0, c.seed);
  read_int(rd, top, "ddp_timeout", 1, c.distributed.ddp_timeout_seconds);
  if (const Field* f = top.find("ddp_backend"))
    c.distributed.ddp_backend = rd.choice<DdpBackend>(
        *f, {{"auto", DdpBackend::automatic}, {"nccl", DdpBackend::nccl}, {"mpi", DdpBackend::mpi}},
        {"gloo", "ccl", "hccl", "cncl", "mccl"});

  read_string(rd, top, "output_dir", c.output_dir);
  if (c.output_dir.empty()) rd.fail_at(top.find("output_dir")->value, "output_dir must not be empty");
  read_int(rd, top, "logging_steps", 1, c.logging_steps);
  read_int(rd, top, "eval_steps", 0, c.eval_steps);
  read_int(rd, top, "saves_per_epoch", 0, c.saves_per_epoch);
  read_int(rd, top, "save_steps", 0, c.save_steps);
  read_string(rd, top, "resume_from_checkpoint", c.resume_from_checkpoint);

  if (const Field* f = top.find("bf16")) c.bf16 = read_toggle(rd, *f);
  if (const Field* f = top.find("fp16")) c.fp16 = read_toggle(rd, *f);
  if (const Field* f = top.find("tf32")) c.tf32 = read_toggle(rd, *f);
  read_bool(rd, top, "gradient_checkpointing", c.gradient_checkpointing);
  read_bool(rd, top, "flash_attention", c.flash_attention);
  read_bool(rd, top, "trace", c.trace);
  if (const Field* f = top.find("device"))
    c.device = rd.choice<DeviceKind>(*f, {{"cpu", DeviceKind::cpu}, {"cuda", DeviceKind::cuda}, {"auto", DeviceKind::automatic}});
  if (const Field* f = top.find("generate_after_training")) c.generate_after_training = parse_generate(rd, *f);
  c.adapter = detail::parse_adapter(rd, top);

  // Checks across keys. Each names the keys involved and points at the one written last.
  const Field* base = top.find("base_model");
  const Field* scratch = top.find("model_config");
  if (base && scratch && !c.base_model.empty())
    rd.fail_at(later(*base, *scratch).key,
               "base_model and model_config are alternatives: base_model to fine-tune a Hugging Face "
               "model, model_config to train from scratch");
  if (c.base_model.empty() && !c.model_config)
    rd.fail("needs base_model (a Hugging Face model directory) or model_config (to train from scratch)");
  if (c.tokenizer.empty()) {
    if (!c.model_config) c.tokenizer = c.base_model;
    else rd.fail_at(scratch->key, "training from scratch (model_config) needs a tokenizer: a tokenizer.json path or 'byte'");
  }
  if (c.datasets.empty())
    rd.fail(top.find("datasets") ? top.find("datasets")->key.Mark() : YAML::Mark::null_mark(),
            "needs at least one entry in datasets");
  if (c.model_config && c.model_config->max_position_embeddings &&
      c.sequence_len > *c.model_config->max_position_embeddings)
    rd.fail_at(top.find("sequence_len") ? top.find("sequence_len")->value : scratch->key,
               "sequence_len (" + std::to_string(c.sequence_len) + ") exceeds model_config.max_position_embeddings (" +
                   std::to_string(*c.model_config->max_position_embeddings) + ")");
  if (c.val_set_size >= 1 && c.val_set_size != std::floor(c.val_set_size))
    rd.fail_at(top.find("val_set_size")->value,
               "val_set_size must be a fraction below 1 or a whole number of examples, got '" +
                   top.find("val_set_size")->value.Scalar() + "'");

  if (c.num_epochs == 0 && c.max_steps == 0) {
    const Field* f = top.find("num_epochs") ? top.find("num_epochs") : top.find("max_steps");
    rd.fail_at(f->value, "num_epochs and max_steps are both 0: nothing would be trained");
  }
  c.fsdp = detail::parse_fsdp(rd, top);
  if (c.fsdp.enabled && top.find("deepspeed")) {
    const Field* fsdp = top.find("fsdp_config") ? top.find("fsdp_config") : top.find("fsdp");
    rd.fail_at(later(*top.find("deepspeed"), *fsdp).key,
               "deepspeed and " + fsdp->path + " are alternatives: shard with DeepSpeed's ZeRO or with FSDP, not both");
  }
  // Axolotl's fsdp_config.activation_checkpointing: per-layer checkpointing, as gradient_checkpointing.
  if (c.fsdp.activation_checkpointing) {
    if (const Field* f = top.find("gradient_checkpointing"); f && !c.gradient_checkpointing)
      rd.fail_at(f->value, "gradient_checkpointing is false but fsdp_config.activation_checkpointing is true");
    c.gradient_checkpointing = true;
  }
  if (const Field* f = top.find("deepspeed")) {
    c.deepspeed = f->value.Scalar();
    ExplicitKeys given;
    given.fp16 = top.find("fp16") != nullptr;
    given.bf16 = top.find("bf16") != nullptr;
    given.gradient_accumulation_steps = top.find("gradient_accumulation_steps") != nullptr;
    given.micro_batch_size = top.find("micro_batch_size") != nullptr;
    given.max_grad_norm = top.find("max_grad_norm") != nullptr;
    try {
      merge_deepspeed_config(c.deepspeed, given, c);
    } catch (const Error& e) {
      rd.fail_at(f->value, e.what());
    }
  }
  const auto conflict = [&](const char* a, const char* b, bool both_set, const std::string& why) {
    if (both_set) rd.fail_at(later(*top.find(a), *top.find(b)).key, std::string(a) + " and " + b + " " + why);
  };
  conflict("warmup_steps", "warmup_ratio", c.warmup_steps > 0 && c.warmup_ratio > 0,
           "are alternatives: set one of them");
  conflict("saves_per_epoch", "save_steps", c.saves_per_epoch > 0 && c.save_steps > 0,
           "are alternatives: set one of them");
  conflict("bf16", "fp16", c.bf16 == Toggle::on && c.fp16 == Toggle::on, "are both true: pick one precision");
  if (c.eval_steps > 0 && c.val_set_size == 0)
    rd.fail_at(top.find("eval_steps")->key, "eval_steps needs a validation set: set val_set_size above 0");
  if (c.device == DeviceKind::cpu && c.tf32 == Toggle::on)
    rd.fail_at(later(*top.find("device"), *top.find("tf32")).key,
               "tf32 is a CUDA matmul mode: it cannot be true with device cpu");
  if (c.optimizer == OptimizerKind::sgd)
    for (const char* key : {"adam_beta1", "adam_beta2", "adam_epsilon"})
      if (const Field* f = top.find(key)) rd.fail_at(f->key, std::string(key) + " is not used by optimizer sgd");
  return c;
}

TrainConfig load_train_config(const std::string& path) {
  if (std::filesystem::is_directory(path)) SL_FAIL(path, ": is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) SL_FAIL(path, ": cannot read the config file (", std::strerror(errno), ")");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_train_config(text.str(), path);
}

}  // namespace shardlab::config

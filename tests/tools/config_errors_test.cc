// Every way a train config is rejected, and the one-line message each gives: the file,
// line:column when there is a position, and what to change.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "tests/tools/config_test_util.h"
#include "tools/config/config_keys.h"
#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

// Four lines of a valid config; extra keys appended to it start on line 5.
const std::string kBase = "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n";

std::string file_error(const std::string& name) {
  return error_of([&] { load_train_config(config_path(name)); });
}

TEST(TrainConfigErrors, MissingFileNamesThePath) {
  EXPECT_CONTAINS(error_of([] { load_train_config("/nonexistent/run.yaml"); }),
                  "/nonexistent/run.yaml: cannot read the config file");
  EXPECT_CONTAINS(error_of([] { load_train_config(config_path("")); }), "is a directory, not a config file");
}

TEST(TrainConfigErrors, MalformedYamlGivesFileLineAndColumn) {
  EXPECT_CONTAINS(file_error("malformed.yaml"), "malformed.yaml:5:14: malformed YAML: end of sequence flow not found");
  // " b: 2" is indented under a scalar: the parser stops at its colon, line 2 column 3.
  EXPECT_CONTAINS(text_error("a: 1\n b: 2\n"), "inline.yaml:2:3: malformed YAML: illegal map value");
}

TEST(TrainConfigErrors, EmptyOrNonMapConfig) {
  EXPECT_CONTAINS(text_error(""), "inline.yaml: the config is empty");
  EXPECT_CONTAINS(text_error("# only a comment\n"), "inline.yaml: the config is empty");
  EXPECT_CONTAINS(text_error("- a\n- b\n"), "inline.yaml:1:1: the config must be a map of settings, got a list");
}

TEST(TrainConfigErrors, UnknownTopLevelKeySuggestsTheClosest) {
  EXPECT_CONTAINS(file_error("typo_top.yaml"),
                  "typo_top.yaml:5:1: unknown key 'learnig_rate' (did you mean 'learning_rate'?)");
  EXPECT_CONTAINS(text_error(kBase + "micro_bacth_size: 2\n"),
                  "inline.yaml:5:1: unknown key 'micro_bacth_size' (did you mean 'micro_batch_size'?)");
  // Nothing close: no suggestion.
  const std::string far = text_error(kBase + "colour: blue\n");
  EXPECT_CONTAINS(far, "inline.yaml:5:1: unknown key 'colour'");
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST(TrainConfigErrors, NestedKeyAtTheTopLevelSaysWhereItBelongs) {
  EXPECT_CONTAINS(text_error(kBase + "hidden_size: 64\n"),
                  "inline.yaml:5:1: unknown key 'hidden_size' (it belongs under model_config)");
  EXPECT_CONTAINS(text_error(kBase + "field_instruction: q\n"),
                  "unknown key 'field_instruction' (it belongs in a datasets entry)");
}

TEST(TrainConfigErrors, UnknownNestedKeysSuggestTheClosest) {
  EXPECT_CONTAINS(file_error("typo_dataset.yaml"),
                  "typo_dataset.yaml:7:5: unknown key 'feild' in datasets[1] (did you mean 'field'?)");
  EXPECT_CONTAINS(file_error("typo_model_config.yaml"),
                  "typo_model_config.yaml:6:3: unknown key 'num_key_value_head' in model_config "
                  "(did you mean 'num_key_value_heads'?)");
  EXPECT_CONTAINS(text_error(kBase + "generate_after_training:\n  promt: hi\n"),
                  "inline.yaml:6:3: unknown key 'promt' in generate_after_training (did you mean 'prompt'?)");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets:\n  - path: d.jsonl\n    type:\n      formt: x\n"),
                  "inline.yaml:5:7: unknown key 'formt' in datasets[0].type (did you mean 'format'?)");
}

TEST(TrainConfigErrors, DuplicateKey) {
  EXPECT_CONTAINS(text_error(kBase + "seed: 1\nseed: 2\n"),
                  "inline.yaml:6:1: duplicate key 'seed' (first given on line 5)");
}

TEST(TrainConfigErrors, WrongTypes) {
  EXPECT_CONTAINS(file_error("wrong_type.yaml"),
                  "wrong_type.yaml:5:19: micro_batch_size must be a positive integer, got 'two'");
  EXPECT_CONTAINS(text_error(kBase + "micro_batch_size: 0\n"), "micro_batch_size must be a positive integer, got '0'");
  EXPECT_CONTAINS(text_error(kBase + "micro_batch_size: 2.5\n"),
                  "micro_batch_size must be a positive integer, got '2.5'");
  EXPECT_CONTAINS(text_error(kBase + "max_steps: -3\n"), "max_steps must be a non-negative integer, got '-3'");
  EXPECT_CONTAINS(text_error(kBase + "learning_rate: fast\n"), "inline.yaml:5:16: learning_rate must be a number, got 'fast'");
  EXPECT_CONTAINS(text_error(kBase + "learning_rate: .nan\n"), "learning_rate must be a number, got '.nan'");
  EXPECT_CONTAINS(text_error(kBase + "sample_packing: maybe\n"), "sample_packing must be true or false, got 'maybe'");
  EXPECT_CONTAINS(text_error(kBase + "output_dir: [a, b]\n"), "output_dir must be a string, got a list");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets: data.jsonl\n"),
                  "inline.yaml:2:11: datasets must be a list of {path, type, ...} entries, got 'data.jsonl'");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets:\n  - data.jsonl\n"),
                  "inline.yaml:3:5: datasets[0] must be a map of settings, got 'data.jsonl'");
  EXPECT_CONTAINS(text_error("model_config:\n  hidden_size: big\n"),
                  "inline.yaml:2:16: model_config.hidden_size must be a positive integer, got 'big'");
  EXPECT_CONTAINS(text_error(kBase + "generate_after_training:\n  prompt: hi\n  max_new_tokens: many\n"),
                  "generate_after_training.max_new_tokens must be a positive integer, got 'many'");
}

TEST(TrainConfigErrors, BadEnumListsTheAllowedValues) {
  EXPECT_CONTAINS(file_error("bad_enum.yaml"),
                  "bad_enum.yaml:5:12: optimizer must be one of adamw, adamw_torch, sgd, adamw_8bit, adamw_bnb_8bit; got 'adam'");
  EXPECT_CONTAINS(text_error(kBase + "lr_scheduler: cosine_annealing\n"),
                  "lr_scheduler must be one of constant, linear, cosine; got 'cosine_annealing'");
  EXPECT_CONTAINS(text_error(kBase + "device: tpu\n"), "device must be one of cpu, cuda, auto; got 'tpu'");
  EXPECT_CONTAINS(text_error(kBase + "bf16: yes\n"), "bf16 must be one of true, false, auto; got 'yes'");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets:\n  - path: d.jsonl\n    type: alpacca\n"),
                  "inline.yaml:4:11: datasets[0].type must be one of alpaca, completion, custom; got 'alpacca'");
  // Known names of later features say so.
  EXPECT_CONTAINS(text_error(kBase + "optimizer: paged_adamw_8bit\n"),
                  "optimizer 'paged_adamw_8bit' is not supported yet (supported: adamw, adamw_torch, sgd, adamw_8bit, "
                  "adamw_bnb_8bit)");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets:\n  - path: d.jsonl\n    type: sharegpt\n"),
                  "datasets[0].type 'sharegpt' is not supported yet (supported: alpaca, completion, custom)");
}

TEST(TrainConfigErrors, OutOfRangeValues) {
  EXPECT_CONTAINS(text_error(kBase + "learning_rate: -1e-4\n"), "inline.yaml:5:16: learning_rate must be > 0, got '-1e-4'");
  EXPECT_CONTAINS(text_error(kBase + "learning_rate: 0\n"), "learning_rate must be > 0, got '0'");
  EXPECT_CONTAINS(text_error(kBase + "weight_decay: -0.1\n"), "weight_decay must be >= 0, got '-0.1'");
  EXPECT_CONTAINS(text_error(kBase + "adam_beta2: 1.0\n"), "adam_beta2 must be in [0, 1), got '1.0'");
  EXPECT_CONTAINS(text_error(kBase + "warmup_ratio: 1.5\n"), "warmup_ratio must be in [0, 1), got '1.5'");
  EXPECT_CONTAINS(text_error(kBase + "adam_epsilon: 0\n"), "adam_epsilon must be > 0, got '0'");
  EXPECT_CONTAINS(text_error(kBase + "val_set_size: 2.5\n"),
                  "val_set_size must be a fraction below 1 or a whole number of examples, got '2.5'");
  EXPECT_CONTAINS(text_error(kBase + "output_dir: ''\n"), "inline.yaml:5:13: output_dir must not be empty");
  EXPECT_CONTAINS(text_error("model_config:\n  hidden_size: 64\n  rope_theta: -1\n"),
                  "model_config.rope_theta must be > 0, got '-1'");
}

TEST(TrainConfigErrors, Contradictions) {
  EXPECT_CONTAINS(file_error("contradiction.yaml"),
                  "contradiction.yaml:7:1: warmup_steps and warmup_ratio are alternatives: set one of them");
  EXPECT_CONTAINS(text_error(kBase + "num_epochs: 0\n"),
                  "inline.yaml:5:13: num_epochs and max_steps are both 0: nothing would be trained");
  EXPECT_CONTAINS(text_error(kBase + "fp16: true\nbf16: true\n"),
                  "inline.yaml:6:1: bf16 and fp16 are both true: pick one precision");
  EXPECT_CONTAINS(text_error(kBase + "saves_per_epoch: 2\nsave_steps: 100\n"),
                  "inline.yaml:6:1: saves_per_epoch and save_steps are alternatives: set one of them");
  EXPECT_CONTAINS(text_error(kBase + "eval_steps: 10\n"),
                  "inline.yaml:5:1: eval_steps needs a validation set: set val_set_size above 0");
  EXPECT_CONTAINS(text_error(kBase + "device: cpu\ntf32: true\n"),
                  "inline.yaml:6:1: tf32 is a CUDA matmul mode: it cannot be true with device cpu");
  EXPECT_CONTAINS(text_error(kBase + "optimizer: sgd\nadam_beta1: 0.8\n"),
                  "inline.yaml:6:1: adam_beta1 is not used by optimizer sgd");
}

TEST(TrainConfigErrors, ModelSourceContradictions) {
  const std::string scratch =
      "model_config:\n  hidden_size: 64\n  intermediate_size: 128\n  num_hidden_layers: 2\n"
      "  num_attention_heads: 4\n";
  const std::string data = "datasets:\n  - path: d.jsonl\n    type: completion\n";
  EXPECT_CONTAINS(text_error(data), "inline.yaml: needs base_model (a Hugging Face model directory) or model_config");
  EXPECT_CONTAINS(text_error(scratch + "base_model: m\n" + data),
                  "inline.yaml:6:1: base_model and model_config are alternatives");
  EXPECT_CONTAINS(text_error(scratch + data),
                  "inline.yaml:1:1: training from scratch (model_config) needs a tokenizer: a tokenizer.json path or 'byte'");
  EXPECT_CONTAINS(text_error("model_config:\n  hidden_size: 64\ntokenizer: byte\n" + data),
                  "inline.yaml:1:1: model_config needs intermediate_size");
  EXPECT_CONTAINS(text_error("model_config:\n  hidden_size: 64\n  intermediate_size: 128\n  num_hidden_layers: 2\n"
                             "  num_attention_heads: 5\ntokenizer: byte\n" + data),
                  "inline.yaml:5:24: model_config.num_attention_heads (5) must divide hidden_size (64)");
  EXPECT_CONTAINS(text_error(scratch + "  num_key_value_heads: 3\ntokenizer: byte\n" + data),
                  "model_config.num_key_value_heads (3) must divide num_attention_heads (4)");
  EXPECT_CONTAINS(text_error(scratch + "  max_position_embeddings: 64\ntokenizer: byte\nsequence_len: 128\n" + data),
                  "inline.yaml:8:15: sequence_len (128) exceeds model_config.max_position_embeddings (64)");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets: []\n"), "inline.yaml:2:1: needs at least one entry in datasets");
}

TEST(TrainConfigErrors, DatasetKeysMustFitTheType) {
  const std::string head = "base_model: m\ndatasets:\n  - path: d.jsonl\n";
  EXPECT_CONTAINS(text_error(head + "    type: alpaca\n    field: body\n"),
                  "inline.yaml:5:5: datasets[0].field is not used by datasets of type alpaca");
  EXPECT_CONTAINS(text_error(head + "    type: alpaca\n    field_system: sys\n"),
                  "datasets[0].field_system is not used by datasets of type alpaca");
  EXPECT_CONTAINS(text_error(head + "    type: completion\n    format: '{instruction}'\n"),
                  "datasets[0].format is not used by datasets of type completion");
  EXPECT_CONTAINS(text_error(head + "    type: custom\n"),
                  "inline.yaml:4:5: datasets[0] has a custom type but no format");
  EXPECT_CONTAINS(text_error(head + "    type: custom\n    format: 'Q: {question}'\n"),
                  "inline.yaml:5:13: datasets[0].format has an unknown placeholder {question}");
  EXPECT_CONTAINS(text_error(head + "    type: custom\n    format: 'Q: {instruction'\n"),
                  "datasets[0].format has an unclosed '{'");
  EXPECT_CONTAINS(text_error(head + "    type: custom\n    format: '{instruction}'\n    no_input_format: '{input}'\n"),
                  "datasets[0].no_input_format is for records without an input, so it cannot use {input}");
  EXPECT_CONTAINS(text_error(head + "    format: 'a {instruction}'\n    type:\n      format: 'b {instruction}'\n"),
                  "inline.yaml:6:7: datasets[0].format is given twice: in the entry and under type");
  EXPECT_CONTAINS(text_error(head + "    type: alpaca\n    field_output: ''\n"),
                  "datasets[0].field_output must name a column, got an empty string");
  EXPECT_CONTAINS(text_error("base_model: m\ndatasets:\n  - type: alpaca\n"), "inline.yaml:3:5: datasets[0] needs a path");
  EXPECT_CONTAINS(text_error(head), "inline.yaml:3:5: datasets[0] needs a type: alpaca, completion or custom");
  EXPECT_CONTAINS(text_error(head + "    type: alpaca\n    ds_type: parquet\n"),
                  "datasets[0].ds_type must be json (only local .json/.jsonl files are supported), got 'parquet'");
  EXPECT_CONTAINS(text_error(head + "    type: alpaca\n    split: validation\n"),
                  "datasets[0].split must be train (local files have one split), got 'validation'");
}

TEST(TrainConfigErrors, UnsupportedYetKeysAreRejectedUnlessOff) {
  EXPECT_CONTAINS(file_error("unsupported.yaml"), "unsupported.yaml:5:1: 'load_in_8bit' is not supported yet");
  EXPECT_CONTAINS(text_error(kBase + "peft_use_dora: true\n"), "inline.yaml:5:1: 'peft_use_dora' is not supported yet");
  EXPECT_CONTAINS(text_error(kBase + "deepspeed: ds_zero2.json\n"), "deepspeed config 'ds_zero2.json' is not a readable file");
  EXPECT_CONTAINS(text_error(kBase + "fsdp_config:\n  fsdp_limit_all_gathers: true\n"),
                  "'fsdp_limit_all_gathers' in fsdp_config is not supported yet");
  EXPECT_CONTAINS(text_error(kBase + "tokenizer_config: tok/\n"),
                  "'tokenizer_config' is not supported yet; use 'tokenizer'");
  EXPECT_CONTAINS(text_error(kBase.substr(0, kBase.size() - 1) + "\n    data_files: [a.json]\n"),
                  "inline.yaml:5:5: 'data_files' in datasets[0] is not supported yet");
  EXPECT_CONTAINS(text_error("model_config:\n  head_dim: 16\n"), "'head_dim' in model_config is not supported yet");
  // Empty, false, [] and {} say "off" and pass.
  EXPECT_NO_THROW(parse_train_config(kBase + "adapter:\nload_in_4bit: false\nfsdp: []\nfsdp_config: {}\nlora_r: ''\n",
                                     "inline.yaml"));
}

TEST(TrainConfigErrors, ResolveAutoChecksTheMachine) {
  TrainConfig c = parse_train_config(kBase, "inline.yaml");
  c.device = DeviceKind::cuda;
  EXPECT_CONTAINS(error_of([&] { resolve_auto(c, RuntimeCaps{}); }), "device is cuda but no CUDA device is visible");
  c.bf16 = Toggle::on;
  EXPECT_CONTAINS(error_of([&] { resolve_auto(c, RuntimeCaps{true, false, false}); }),
                  "bf16 is true but this GPU has no bf16 support");
  c.bf16 = Toggle::off;
  c.tf32 = Toggle::on;
  EXPECT_CONTAINS(error_of([&] { resolve_auto(c, RuntimeCaps{true, false, false}); }),
                  "tf32 is true but this GPU has no tf32 support");
  c.device = DeviceKind::automatic;  // resolves to the CPU without a GPU
  EXPECT_CONTAINS(error_of([&] { resolve_auto(c, RuntimeCaps{}); }), "tf32 is a CUDA matmul mode");
}

TEST(TrainConfigKeys, EditDistanceCountsSwapsAsOneEdit) {
  EXPECT_EQ(detail::edit_distance("learnig_rate", "learning_rate"), 1u);
  EXPECT_EQ(detail::edit_distance("feild", "field"), 1u);  // a swap, not two substitutions
  EXPECT_EQ(detail::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(detail::edit_distance("", "abc"), 3u);
  EXPECT_EQ(detail::edit_distance("seed", "seed"), 0u);
}

}  // namespace
}  // namespace shardlab::config

// Dataset specs and prompt formats with Axolotl's semantics: "alpaca" (the Stanford Alpaca
// templates), "completion" (raw text) and user-defined "custom" formats; turns one JSON record
// into the prompt (masked unless train_on_inputs) and the response (trained).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/json.h"

namespace shardlab::models {

enum class DatasetType { alpaca, completion, custom };
const char* dataset_type_name(DatasetType t);
// "alpaca" | "completion" | "custom"; anything else is an error naming `where` and the value.
DatasetType parse_dataset_type(std::string_view name, std::string_view where);

// One entry of the config's `datasets:` list.
struct DatasetSpec {
  std::string path;  // a local .json (array of objects, or JSON lines) or .jsonl file
  DatasetType type = DatasetType::alpaca;

  // completion: the text field.
  std::string field = "text";

  // alpaca and custom: where each part comes from. Instruction and output are required strings.
  // The input is optional per record (absent, null or "" means none: the no-input template).
  // The system field is optional too; when absent or null, system_prompt is used instead.
  std::string field_instruction = "instruction";
  std::string field_input = "input";
  std::string field_output = "output";
  std::string field_system = "system";
  // The system text when a record has no `field_system`. For alpaca a non-empty system_prompt
  // replaces the standard preamble ("Below is an instruction ...") and is followed by "\n\n".
  std::string system_prompt;

  // custom only. Placeholders {instruction}, {input}, {system}; "{{" and "}}" are literal
  // braces; any other {name} is an error. `format` is used when the record has an input,
  // `no_input_format` (which must not contain {input}) when it has none; an empty
  // no_input_format falls back to `format` with {input} = "".
  // When the chosen format has no {system}, a non-empty system text is prepended through
  // system_format (Axolotl's default "{system}").
  std::string format;
  std::string no_input_format;
  std::string system_format = "{system}";

  // Checks the spec on its own (custom formats present and well formed); errors name the path.
  void validate() const;

  // From a config entry: {path, type, field, field_*, system_prompt, system_format, format,
  // no_input_format}. `type` is a name, or an object of custom keys (Axolotl's user-defined
  // form, which implies "custom"). Unknown keys are errors naming the key.
  static DatasetSpec from_json(const json::Ref& entry);
};

// What one record contributes: prompt + response are tokenized separately (so the mask falls
// exactly on the boundary) and concatenated. Completion records have an empty prompt.
struct PromptParts {
  std::string prompt;
  std::string response;
};

// The standard Alpaca templates.
inline constexpr std::string_view kAlpacaPreambleInput =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n";
inline constexpr std::string_view kAlpacaPreambleNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";
inline constexpr std::string_view kAlpacaTurnInput = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
inline constexpr std::string_view kAlpacaTurnNoInput = "### Instruction:\n{instruction}\n\n### Response:\n";

// Formats `record` (which must be an object). `where` names it in errors: "data.jsonl:3" or
// "data.json: record 4 (0-based)", giving messages such as
//   data.jsonl:3: field "output" must be a string, got number
PromptParts format_record(const DatasetSpec& spec, const json::Value& record, std::string_view where);

// Fills {instruction}/{input}/{system} in `tmpl`; `what` names the template in errors.
std::string fill_template(std::string_view tmpl, std::string_view instruction, std::string_view input,
                          std::string_view system, std::string_view what);

}  // namespace shardlab::models

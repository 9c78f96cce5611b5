// Prompt formats: the Alpaca templates, custom {placeholder} formats and dataset specs.
#include "models/prompt_format.h"

#include <array>
#include <functional>

#include "core/error.h"

namespace shardlab::models {

const char* dataset_type_name(DatasetType t) {
  switch (t) {
    case DatasetType::alpaca: return "alpaca";
    case DatasetType::completion: return "completion";
    case DatasetType::custom: return "custom";
  }
  return "?";
}

DatasetType parse_dataset_type(std::string_view name, std::string_view where) {
  if (name == "alpaca") return DatasetType::alpaca;
  if (name == "completion") return DatasetType::completion;
  if (name == "custom") return DatasetType::custom;
  SL_FAIL(where, ": unknown dataset type \"", name, "\" (supported: alpaca, completion, custom)");
}

namespace {

// Walks a template, calling on_text for literal runs and on_field for each placeholder name.
// Python str.format rules restricted to bare names: "{{" / "}}" escape, anything else is an error.
void scan_template(std::string_view tmpl, std::string_view what, const std::function<void(std::string_view)>& on_text,
                   const std::function<void(std::string_view)>& on_field) {
  size_t i = 0;
  while (i < tmpl.size()) {
    char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      on_text("{");
      i += 2;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      on_text("}");
      i += 2;
    } else if (c == '{') {
      size_t close = tmpl.find('}', i + 1);
      SL_CHECK(close != std::string_view::npos, what, ": unclosed '{' at offset ", i, " in \"", tmpl, "\"");
      std::string_view name = tmpl.substr(i + 1, close - i - 1);
      SL_CHECK(name == "instruction" || name == "input" || name == "system", what, ": unknown placeholder {", name,
               "} in \"", tmpl, "\" (use {instruction}, {input}, {system}; {{ and }} for literal braces)");
      on_field(name);
      i = close + 1;
    } else if (c == '}') {
      SL_FAIL(what, ": single '}' at offset ", i, " in \"", tmpl, "\" (write }} for a literal brace)");
    } else {
      size_t next = tmpl.find_first_of("{}", i);
      if (next == std::string_view::npos) next = tmpl.size();
      on_text(tmpl.substr(i, next - i));
      i = next;
    }
  }
}

bool uses_placeholder(std::string_view tmpl, std::string_view name, std::string_view what) {
  bool found = false;
  scan_template(tmpl, what, [](std::string_view) {}, [&](std::string_view f) { found = found || f == name; });
  return found;
}

std::string type_of(const json::Value& v) { return json::type_name(v.type()); }

// A required string field.
const std::string& required_string(const json::Value& record, const std::string& field, std::string_view where) {
  const json::Value* v = record.find(field);
  SL_CHECK(v != nullptr, where, ": field \"", field, "\" is missing");
  SL_CHECK(v->is_string(), where, ": field \"", field, "\" must be a string, got ", type_of(*v));
  return v->as_string();
}

// An optional string field: absent or null gives nullopt-like "", flagged through `present`.
std::string optional_string(const json::Value& record, const std::string& field, std::string_view where,
                            bool* present) {
  *present = false;
  if (field.empty()) return {};
  const json::Value* v = record.find(field);
  if (v == nullptr || v->is_null()) return {};
  SL_CHECK(v->is_string(), where, ": field \"", field, "\" must be a string, got ", type_of(*v));
  *present = true;
  return v->as_string();
}

}  // namespace

std::string fill_template(std::string_view tmpl, std::string_view instruction, std::string_view input,
                          std::string_view system, std::string_view what) {
  std::string out;
  out.reserve(tmpl.size() + instruction.size() + input.size() + system.size());
  scan_template(
      tmpl, what, [&](std::string_view text) { out += text; },
      [&](std::string_view name) {
        if (name == "instruction") out += instruction;
        else if (name == "input") out += input;
        else out += system;
      });
  return out;
}

void DatasetSpec::validate() const {
  SL_CHECK(!path.empty(), "dataset spec: path is empty");
  if (type == DatasetType::completion) {
    SL_CHECK(!field.empty(), path, ": completion dataset needs a non-empty `field`");
    return;
  }
  SL_CHECK(!field_instruction.empty(), path, ": field_instruction is empty");
  SL_CHECK(!field_output.empty(), path, ": field_output is empty");
  if (type != DatasetType::custom) return;
  SL_CHECK(!format.empty(), path, ": custom dataset format needs `format`");
  std::string what = path + ": format";
  uses_placeholder(format, "instruction", what);  // syntax check
  uses_placeholder(system_format, "system", path + ": system_format");
  if (!no_input_format.empty()) {
    SL_CHECK(!uses_placeholder(no_input_format, "input", path + ": no_input_format"), path,
             ": no_input_format must not contain {input}: \"", no_input_format, "\"");
  }
}

PromptParts format_record(const DatasetSpec& spec, const json::Value& record, std::string_view where) {
  SL_CHECK(record.is_object(), where, ": expected a JSON object, got ", type_of(record));
  PromptParts parts;
  if (spec.type == DatasetType::completion) {
    parts.response = required_string(record, spec.field, where);
    return parts;
  }
  const std::string& instruction = required_string(record, spec.field_instruction, where);
  bool has_input = false, has_system = false;
  std::string input = optional_string(record, spec.field_input, where, &has_input);
  has_input = has_input && !input.empty();
  std::string system = optional_string(record, spec.field_system, where, &has_system);
  if (!has_system) system = spec.system_prompt;
  parts.response = required_string(record, spec.field_output, where);

  if (spec.type == DatasetType::alpaca) {
    // Axolotl's alpaca reads no system field; a configured system_prompt replaces the preamble.
    if (!spec.system_prompt.empty()) parts.prompt = spec.system_prompt + "\n\n";
    else parts.prompt = std::string(has_input ? kAlpacaPreambleInput : kAlpacaPreambleNoInput);
    parts.prompt += fill_template(has_input ? kAlpacaTurnInput : kAlpacaTurnNoInput, instruction, input, "",
                                  "alpaca template");
    return parts;
  }

  // custom
  std::string_view tmpl = spec.format;
  std::string what = spec.path + ": format";
  if (!has_input && !spec.no_input_format.empty()) {
    tmpl = spec.no_input_format;
    what = spec.path + ": no_input_format";
  }
  if (!uses_placeholder(tmpl, "system", what) && !system.empty())
    parts.prompt = fill_template(spec.system_format, "", "", system, spec.path + ": system_format");
  parts.prompt += fill_template(tmpl, instruction, input, system, what);
  return parts;
}

DatasetSpec DatasetSpec::from_json(const json::Ref& entry) {
  static constexpr std::array<std::string_view, 13> kKeys = {
      "path",         "type",          "field",  "field_instruction", "field_input",    "field_output",
      "field_system", "system_prompt", "format", "no_input_format",   "system_format", "ds_type",
      "split"};
  static constexpr std::array<std::string_view, 9> kCustomKeys = {
      "field",         "field_instruction", "field_input", "field_output",   "field_system",
      "system_prompt", "system_format",     "format",      "no_input_format"};
  auto known = [](std::string_view k, auto& list) {
    for (std::string_view s : list)
      if (s == k) return true;
    return false;
  };
  for (const std::string& k : entry.keys())
    if (!known(k, kKeys)) entry[k].fail("is not a supported dataset key");

  DatasetSpec spec;
  spec.path = entry["path"].as_string();
  auto read_strings = [&spec](const json::Ref& obj) {
    spec.field = obj.get_string("field", spec.field);
    spec.field_instruction = obj.get_string("field_instruction", spec.field_instruction);
    spec.field_input = obj.get_string("field_input", spec.field_input);
    spec.field_output = obj.get_string("field_output", spec.field_output);
    spec.field_system = obj.get_string("field_system", spec.field_system);
    spec.system_prompt = obj.get_string("system_prompt", spec.system_prompt);
    spec.system_format = obj.get_string("system_format", spec.system_format);
    spec.format = obj.get_string("format", spec.format);
    spec.no_input_format = obj.get_string("no_input_format", spec.no_input_format);
  };
  read_strings(entry);
  if (std::optional<json::Ref> type = entry.get("type")) {
    if (type->type() == json::Type::object) {
      for (const std::string& k : type->keys())
        if (!known(k, kCustomKeys)) (*type)[k].fail("is not a supported custom format key");
      spec.type = DatasetType::custom;
      read_strings(*type);
    } else {
      std::string where = type->source() + ": key \"" + type->path() + "\"";
      spec.type = parse_dataset_type(type->as_string(), where);
    }
  } else {
    entry.fail("needs a `type` (alpaca, completion or custom)");
  }
  if (std::optional<json::Ref> ds = entry.get("ds_type"); ds && !ds->is_null()) {
    const std::string& v = ds->as_string();
    if (v != "json") ds->fail("must be \"json\" (only local JSON/JSONL files are supported)");
  }
  if (std::optional<json::Ref> split = entry.get("split"); split && !split->is_null()) {
    if (split->as_string() != "train") split->fail("must be \"train\" (local files have one split)");
  }
  spec.validate();
  return spec;
}

}  // namespace shardlab::models

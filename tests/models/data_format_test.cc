// Prompt formats: the Alpaca templates word for word, custom formats with every placeholder,
// escapes and system handling, completion records, dataset specs from config JSON, and errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/prompt_format.h"
#include "tests/models/data_test_util.h"

namespace shardlab::models {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

json::Value obj(std::string_view text) { return json::parse(text); }

DatasetSpec custom_spec() {
  DatasetSpec s;
  s.path = "custom.jsonl";
  s.type = DatasetType::custom;
  s.field_instruction = "q";
  s.field_input = "ctx";
  s.field_output = "a";
  s.field_system = "sys";
  s.system_prompt = "Be brief.";
  s.format = "<s>{system}</s>[INST] {instruction}\n{input} [/INST]";
  s.no_input_format = "<s>{system}</s>[INST] {instruction} [/INST]";
  return s;
}

TEST(DataFormat, AlpacaWithInput) {
  DatasetSpec s;
  s.path = "a.jsonl";
  PromptParts p = format_record(s, obj(R"({"instruction": "Add", "input": "2 3", "output": "5"})"), "a.jsonl:1");
  EXPECT_EQ(p.prompt,
            "Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nAdd\n\n### Input:\n2 3\n\n### Response:\n");
  EXPECT_EQ(p.response, "5");
}

TEST(DataFormat, AlpacaWithoutInputMissingNullOrEmpty) {
  DatasetSpec s;
  s.path = "a.jsonl";
  const std::string expected =
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nGreet\n\n### Response:\n";
  for (const char* rec : {R"({"instruction": "Greet", "output": "Hi"})",
                          R"({"instruction": "Greet", "input": null, "output": "Hi"})",
                          R"({"instruction": "Greet", "input": "", "output": "Hi"})"}) {
    PromptParts p = format_record(s, obj(rec), "a.jsonl:1");
    EXPECT_EQ(p.prompt, expected) << rec;
    EXPECT_EQ(p.response, "Hi");
  }
}

TEST(DataFormat, AlpacaSystemPromptReplacesPreamble) {
  DatasetSpec s;
  s.path = "a.jsonl";
  s.system_prompt = "You are terse.";
  PromptParts p = format_record(s, obj(R"({"instruction": "Greet", "output": "Hi"})"), "a.jsonl:1");
  EXPECT_EQ(p.prompt, "You are terse.\n\n### Instruction:\nGreet\n\n### Response:\n");
}

TEST(DataFormat, AlpacaRenamedFields) {
  DatasetSpec s;
  s.path = "a.jsonl";
  s.field_instruction = "task";
  s.field_output = "answer";
  PromptParts p = format_record(s, obj(R"({"task": "Greet", "answer": "Hi"})"), "a.jsonl:1");
  EXPECT_THAT(p.prompt, HasSubstr("### Instruction:\nGreet\n\n"));
  EXPECT_EQ(p.response, "Hi");
}

TEST(DataFormat, CompletionUsesTheTextField) {
  DatasetSpec s;
  s.path = "c.jsonl";
  s.type = DatasetType::completion;
  PromptParts p = format_record(s, obj(R"({"text": "abc", "other": 1})"), "c.jsonl:1");
  EXPECT_EQ(p.prompt, "");
  EXPECT_EQ(p.response, "abc");
  s.field = "body";
  EXPECT_EQ(format_record(s, obj(R"({"body": "xyz"})"), "c.jsonl:1").response, "xyz");
}

TEST(DataFormat, CustomWithInputAndRecordSystem) {
  PromptParts p = format_record(custom_spec(), obj(R"({"q": "Q1", "ctx": "C1", "a": "A1", "sys": "S1"})"), "c:1");
  EXPECT_EQ(p.prompt, "<s>S1</s>[INST] Q1\nC1 [/INST]");
  EXPECT_EQ(p.response, "A1");
}

TEST(DataFormat, CustomNoInputFallsBackToSystemPrompt) {
  PromptParts p = format_record(custom_spec(), obj(R"({"q": "Q2", "a": "A2"})"), "c:2");
  EXPECT_EQ(p.prompt, "<s>Be brief.</s>[INST] Q2 [/INST]");
}

TEST(DataFormat, CustomWithoutNoInputFormatUsesFormatWithEmptyInput) {
  DatasetSpec s = custom_spec();
  s.no_input_format.clear();
  s.format = "{instruction}|{input}|";
  s.system_prompt.clear();
  EXPECT_EQ(format_record(s, obj(R"({"q": "Q", "a": "A"})"), "c:1").prompt, "Q||");
}

TEST(DataFormat, CustomWithoutSystemPlaceholderPrependsSystemFormat) {
  DatasetSpec s = custom_spec();
  s.format = "User: {instruction} {input}\nAssistant: ";
  s.no_input_format = "User: {instruction}\nAssistant: ";
  s.system_format = "System: {system}\n";
  EXPECT_EQ(format_record(s, obj(R"({"q": "Q", "ctx": "C", "a": "A"})"), "c:1").prompt,
            "System: Be brief.\nUser: Q C\nAssistant: ");
  // An empty system text adds nothing.
  s.system_prompt.clear();
  EXPECT_EQ(format_record(s, obj(R"({"q": "Q", "a": "A"})"), "c:1").prompt, "User: Q\nAssistant: ");
}

TEST(DataFormat, TemplateBraceEscapes) {
  EXPECT_EQ(fill_template("{{json}}: {instruction} }}{{", "I", "", "", "t"), "{json}: I }{");
}

TEST(DataFormat, TemplateErrorsNameTheTemplate) {
  EXPECT_THAT(error_of([] { fill_template("{instruction} {foo}", "", "", "", "my.jsonl: format"); }),
              AllOf(HasSubstr("my.jsonl: format"), HasSubstr("unknown placeholder {foo}")));
  EXPECT_THAT(error_of([] { fill_template("{instruction", "", "", "", "t"); }), HasSubstr("unclosed '{'"));
  EXPECT_THAT(error_of([] { fill_template("a } b", "", "", "", "t"); }), HasSubstr("single '}'"));
}

TEST(DataFormat, SpecValidation) {
  DatasetSpec s = custom_spec();
  s.no_input_format = "{instruction} {input}";
  EXPECT_THAT(error_of([&] { s.validate(); }),
              AllOf(HasSubstr("custom.jsonl"), HasSubstr("no_input_format must not contain {input}")));
  s = custom_spec();
  s.format.clear();
  EXPECT_THAT(error_of([&] { s.validate(); }), AllOf(HasSubstr("custom.jsonl"), HasSubstr("needs `format`")));
  s = custom_spec();
  s.format = "{instr}";
  EXPECT_THAT(error_of([&] { s.validate(); }), HasSubstr("unknown placeholder {instr}"));
}

TEST(DataFormat, RecordErrorsNameWhereAndField) {
  DatasetSpec s;
  s.path = "a.jsonl";
  EXPECT_THAT(error_of([&] { format_record(s, obj(R"({"instruction": "x"})"), "a.jsonl:7"); }),
              HasSubstr("a.jsonl:7: field \"output\" is missing"));
  EXPECT_THAT(error_of([&] { format_record(s, obj(R"({"instruction": 3, "output": "y"})"), "a.jsonl:2"); }),
              HasSubstr("a.jsonl:2: field \"instruction\" must be a string, got number"));
  EXPECT_THAT(error_of([&] { format_record(s, obj(R"({"instruction": "x", "input": [1], "output": "y"})"), "f:1"); }),
              HasSubstr("f:1: field \"input\" must be a string, got array"));
  EXPECT_THAT(error_of([&] { format_record(s, obj("[1, 2]"), "a.json: record 3"); }),
              HasSubstr("a.json: record 3: expected a JSON object, got array"));
  EXPECT_THAT(error_of([&] { format_record(custom_spec(), obj(R"({"q": "x", "a": "y", "sys": 5})"), "c:4"); }),
              HasSubstr("c:4: field \"sys\" must be a string, got number"));
}

TEST(DataFormat, ParseType) {
  EXPECT_EQ(parse_dataset_type("alpaca", "x"), DatasetType::alpaca);
  EXPECT_EQ(parse_dataset_type("completion", "x"), DatasetType::completion);
  EXPECT_EQ(parse_dataset_type("custom", "x"), DatasetType::custom);
  EXPECT_THAT(error_of([] { parse_dataset_type("sharegpt", "config.yaml: datasets[0].type"); }),
              AllOf(HasSubstr("config.yaml: datasets[0].type"), HasSubstr("unknown dataset type \"sharegpt\"")));
}

TEST(DataFormat, SpecFromJson) {
  json::Value v = json::parse(R"({"path": "d.jsonl", "type": "completion", "field": "body"})");
  DatasetSpec s = DatasetSpec::from_json(json::Ref(v, "cfg", "datasets[0]"));
  EXPECT_EQ(s.path, "d.jsonl");
  EXPECT_EQ(s.type, DatasetType::completion);
  EXPECT_EQ(s.field, "body");

  json::Value c = json::parse(R"({"path": "d.jsonl", "type": {"field_instruction": "q", "field_output": "a",
                                  "format": "Q: {instruction}\nA: ", "system_prompt": "S"}})");
  DatasetSpec cs = DatasetSpec::from_json(json::Ref(c, "cfg", "datasets[1]"));
  EXPECT_EQ(cs.type, DatasetType::custom);
  EXPECT_EQ(cs.field_instruction, "q");
  EXPECT_EQ(cs.field_output, "a");
  EXPECT_EQ(cs.format, "Q: {instruction}\nA: ");
  EXPECT_EQ(cs.system_prompt, "S");
}

TEST(DataFormat, SpecFromJsonErrors) {
  auto err = [](std::string_view text) {
    json::Value v = json::parse(text);
    return error_of([&] { DatasetSpec::from_json(json::Ref(v, "cfg.yaml", "datasets[0]")); });
  };
  EXPECT_THAT(err(R"({"path": "d.jsonl", "type": "sharegpt"})"),
              AllOf(HasSubstr("cfg.yaml"), HasSubstr("datasets[0].type"), HasSubstr("\"sharegpt\"")));
  EXPECT_THAT(err(R"({"path": "d.jsonl", "type": "alpaca", "shuffle": true})"),
              AllOf(HasSubstr("datasets[0].shuffle"), HasSubstr("not a supported dataset key")));
  EXPECT_THAT(err(R"({"path": "d.jsonl", "type": {"format": "{instruction}", "colour": "red"}})"),
              AllOf(HasSubstr("datasets[0].type.colour"), HasSubstr("not a supported custom format key")));
  EXPECT_THAT(err(R"({"path": "d.jsonl"})"), HasSubstr("needs a `type`"));
  EXPECT_THAT(err(R"({"type": "alpaca"})"), HasSubstr("path"));
  EXPECT_THAT(err(R"({"path": "d.jsonl", "type": {"field_instruction": "q"}})"), HasSubstr("needs `format`"));
  EXPECT_THAT(err(R"({"path": "d.jsonl", "type": "alpaca", "ds_type": "parquet"})"), HasSubstr("ds_type"));
}

}  // namespace
}  // namespace shardlab::models

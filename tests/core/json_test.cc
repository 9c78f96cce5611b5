// JSON parser/writer tests: values, exact integers, escapes and UTF-8, every error path with its
// line:column, the depth limit, writer round trips, Object lookups and Ref's key-path errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "core/json.h"

namespace shardlab::json {
namespace {

using ::testing::HasSubstr;

std::string error_of(std::string_view text, std::string_view source = "cfg.json") {
  try {
    parse(text, source);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Json, ParsesScalars) {
  EXPECT_TRUE(parse("null").is_null());
  EXPECT_TRUE(parse(" true ").as_bool());
  EXPECT_FALSE(parse("false").as_bool());
  EXPECT_EQ(parse("42").as_int(), 42);
  EXPECT_TRUE(parse("42").is_integer());
  EXPECT_EQ(parse("-7").as_int(), -7);
  EXPECT_EQ(parse("0").as_int(), 0);
  EXPECT_EQ(parse("\"hi\"").as_string(), "hi");
  EXPECT_EQ(parse("\"\"").as_string(), "");
  EXPECT_EQ(parse("[]").size(), 0u);
  EXPECT_EQ(parse("{}").size(), 0u);
}

TEST(Json, IntegersAbove2Pow53StayExact) {
  // 2^53 + 1 is not representable as a double; the int64 must keep it.
  Value v = parse("9007199254740993");
  ASSERT_TRUE(v.is_integer());
  EXPECT_EQ(v.as_int(), 9007199254740993LL);
  EXPECT_EQ(parse("9223372036854775807").as_int(), INT64_MAX);
  EXPECT_EQ(parse("-9223372036854775808").as_int(), INT64_MIN);
  // One past int64: only the double survives, and it is not an integer literal any more.
  Value big = parse("9223372036854775808");
  EXPECT_FALSE(big.is_integer());
  EXPECT_EQ(big.as_double(), 9223372036854775808.0);
  Value huge = parse("123456789012345678901234567890");
  EXPECT_FALSE(huge.is_integer());
  EXPECT_DOUBLE_EQ(huge.as_double(), 1.2345678901234568e29);
}

TEST(Json, DoublesAndExponents) {
  EXPECT_EQ(parse("0.1").as_double(), 0.1);
  EXPECT_EQ(parse("-1.5e+2").as_double(), -150.0);
  EXPECT_EQ(parse("2.5E-3").as_double(), 0.0025);
  EXPECT_EQ(parse("1e3").as_double(), 1000.0);
  EXPECT_FALSE(parse("1e3").is_integer());
  EXPECT_FALSE(parse("1.0").is_integer());
  EXPECT_EQ(parse("500000.0").as_double(), 500000.0);
  EXPECT_EQ(parse("1e-400").as_double(), 0.0);  // underflow rounds to zero
  EXPECT_EQ(parse("4.9e-324").as_double(), 4.9e-324);
  EXPECT_EQ(parse("1.7976931348623157e308").as_double(), 1.7976931348623157e308);
  EXPECT_THAT(error_of("1e400"), HasSubstr("cfg.json:1:1: number out of range"));
  // Integer-valued doubles are usable as integers; fractional ones are not.
  EXPECT_EQ(parse("4096.0").as_int(), 4096);
  EXPECT_EQ(parse("1e3").as_int(), 1000);
  EXPECT_THROW(parse("2.5").as_int(), Error);
  EXPECT_EQ(parse("7").as_double(), 7.0);
}

TEST(Json, StringEscapes) {
  EXPECT_EQ(parse(R"("\"\\\/\b\f\n\r\t")").as_string(), "\"\\/\b\f\n\r\t");
  EXPECT_EQ(parse(R"("\u0041\u00e9\u20AC")").as_string(), "A\xC3\xA9\xE2\x82\xAC");  // A, é, €
  // A surrogate pair names one code point above U+FFFF: U+1F600 is F0 9F 98 80 in UTF-8.
  EXPECT_EQ(parse(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");
  std::string nul = parse(R"("a\u0000b")").as_string();
  EXPECT_EQ(nul.size(), 3u);
  EXPECT_EQ(nul[1], '\0');
  // Raw UTF-8 passes through untouched.
  EXPECT_EQ(parse("\"\xC4\xA0hello \xE4\xB8\xAD\"").as_string(), "\xC4\xA0hello \xE4\xB8\xAD");
}

TEST(Json, ErrorsNameLineAndColumn) {
  // Line 3 is `  "b" 2`: the 2 sits in column 7.
  EXPECT_EQ(error_of("{\n  \"a\": 1,\n  \"b\" 2\n}"), "cfg.json:3:7: expected ':' after the key");
  // Line 3 is ` "hidden_size": 5 6}`: the 6 sits in column 19.
  EXPECT_EQ(error_of("{\n \"a\": 1,\n \"hidden_size\": 5 6}"), "cfg.json:3:19: expected ',' or '}'");
  EXPECT_EQ(error_of("[1 2]"), "cfg.json:1:4: expected ',' or ']'");
  EXPECT_EQ(error_of("{\"a\":1,}"), "cfg.json:1:8: expected a string key");
  EXPECT_EQ(error_of("[1,2,]"), "cfg.json:1:6: expected a value");
  EXPECT_EQ(error_of("{'a': 1}"), "cfg.json:1:2: expected a string key");
  EXPECT_EQ(error_of(""), "cfg.json:1:1: unexpected end of input, expected a value");
  EXPECT_EQ(error_of("   \n  "), "cfg.json:2:3: unexpected end of input, expected a value");
  EXPECT_EQ(error_of("[1, 2"), "cfg.json:1:6: unexpected end of input, expected ',' or ']'");
  EXPECT_EQ(error_of("{} x"), "cfg.json:1:4: unexpected characters after the JSON value");
  EXPECT_EQ(error_of("{\"a\":1,\"a\":2}"), "cfg.json:1:8: duplicate key \"a\"");
  EXPECT_EQ(error_of("\"abc"), "cfg.json:1:1: unterminated string");
  EXPECT_EQ(error_of("\"a\\x\""), "cfg.json:1:3: invalid escape '\\x'");
  EXPECT_EQ(error_of("\"a\tb\""), "cfg.json:1:3: control character in string (must be escaped)");
  EXPECT_EQ(error_of("\"\\u12G4\""), "cfg.json:1:2: invalid \\u escape: needs 4 hex digits");
  EXPECT_EQ(error_of("\"\\ud800\""), "cfg.json:1:2: invalid \\u escape: unpaired high surrogate");
  EXPECT_EQ(error_of("\"\\ud800\\u0041\""), "cfg.json:1:2: invalid \\u escape: unpaired high surrogate");
  EXPECT_EQ(error_of("\"\\udc00\""), "cfg.json:1:2: invalid \\u escape: unpaired low surrogate");
  EXPECT_EQ(error_of("01"), "cfg.json:1:1: invalid number: leading zeros are not allowed");
  EXPECT_EQ(error_of("-"), "cfg.json:1:1: invalid number: expected a digit");
  EXPECT_EQ(error_of("[1.]"), "cfg.json:1:2: invalid number: expected a digit after '.'");
  EXPECT_EQ(error_of("1e+"), "cfg.json:1:1: invalid number: expected a digit in the exponent");
  EXPECT_EQ(error_of("+1"), "cfg.json:1:1: expected a value");
  EXPECT_EQ(error_of(".5"), "cfg.json:1:1: expected a value");
  EXPECT_EQ(error_of("NaN"), "cfg.json:1:1: expected a value");
  EXPECT_EQ(error_of("[Infinity]"), "cfg.json:1:2: expected a value");
  EXPECT_EQ(error_of("tru"), "cfg.json:1:1: invalid literal, expected true");
  EXPECT_EQ(error_of("[nul]"), "cfg.json:1:2: invalid literal, expected null");
  EXPECT_EQ(error_of("// c\n{}"), "cfg.json:1:1: expected a value");
  EXPECT_EQ(error_of("\xEF\xBB\xBF{}"), "cfg.json:1:1: UTF-8 byte order mark is not allowed");
  // Columns count characters, not bytes: é is two bytes but one column.
  EXPECT_EQ(error_of("[\"\xC3\xA9\", x]"), "cfg.json:1:7: expected a value");
}

TEST(Json, RejectsInvalidUtf8) {
  EXPECT_EQ(error_of("\"\xFF\""), "cfg.json:1:2: invalid UTF-8 in string");
  EXPECT_EQ(error_of("\"\xC0\xAF\""), "cfg.json:1:2: invalid UTF-8 in string");      // overlong '/'
  EXPECT_EQ(error_of("\"\xED\xA0\x80\""), "cfg.json:1:2: invalid UTF-8 in string");  // encoded surrogate
  EXPECT_EQ(error_of("\"\xF4\x90\x80\x80\""), "cfg.json:1:2: invalid UTF-8 in string");  // > U+10FFFF
  EXPECT_EQ(error_of("\"ab\xE2\x82\""), "cfg.json:1:4: invalid UTF-8 in string");    // cut short
}

TEST(Json, DepthLimit) {
  auto nested = [](int n) { return std::string(static_cast<size_t>(n), '[') + std::string(static_cast<size_t>(n), ']'); };
  EXPECT_NO_THROW(parse(nested(kMaxDepth)));
  EXPECT_EQ(error_of(nested(kMaxDepth + 1)), "cfg.json:1:513: nesting deeper than 512 levels");
  // Far deeper input fails cleanly instead of overflowing the stack.
  EXPECT_THAT(error_of(std::string(1000000, '[')), HasSubstr("nesting deeper than 512 levels"));
  std::string objects;
  for (int i = 0; i <= kMaxDepth; ++i) objects += "{\"a\":";
  EXPECT_THAT(error_of(objects), HasSubstr("nesting deeper than 512 levels"));
}

TEST(Json, WriterCompactAndPretty) {
  Value v = Value::object();
  v.set("name", "llama");
  v.set("layers", 2);
  Value arr = Value::array();
  arr.push_back(true);
  arr.push_back(nullptr);
  arr.push_back(0.5);
  v.set("list", arr);
  v.set("empty", Value::object());
  EXPECT_EQ(dump(v), R"({"name":"llama","layers":2,"list":[true,null,0.5],"empty":{}})");
  EXPECT_EQ(dump_pretty(v),
            "{\n  \"name\": \"llama\",\n  \"layers\": 2,\n  \"list\": [\n    true,\n    null,\n    0.5\n  ],\n"
            "  \"empty\": {}\n}");
  EXPECT_EQ(dump(Value::array()), "[]");
}

TEST(Json, WriterEscapes) {
  EXPECT_EQ(dump(Value("a\"b\\c\n\t\x01\x1f/")), R"("a\"b\\c\n\t\u0001\u001f/")");
  EXPECT_EQ(dump(Value(std::string("x\0y", 3))), R"("x\u0000y")");
  EXPECT_EQ(dump(Value("\xC3\xA9")), "\"\xC3\xA9\"");  // UTF-8 written as is
}

TEST(Json, NumbersRoundTrip) {
  for (double d : {0.1, 1.0 / 3.0, 1e300, 4.9e-324, -2.5e-8, 123456.789, 1.0, -0.0, 1e21, 3e-5}) {
    std::string s = dump(Value(d));
    Value back = parse(s);
    EXPECT_FALSE(back.is_integer()) << s;  // doubles stay doubles ("1.0", not "1")
    EXPECT_EQ(back.as_double(), d) << s;
  }
  EXPECT_EQ(dump(Value(1.0)), "1.0");
  EXPECT_EQ(dump(Value(0.1)), "0.1");
  for (int64_t i : {int64_t{0}, int64_t{-1}, INT64_MAX, INT64_MIN, int64_t{9007199254740993}}) {
    Value back = parse(dump(Value(i)));
    EXPECT_TRUE(back.is_integer());
    EXPECT_EQ(back.as_int(), i);
  }
  EXPECT_THAT([] { dump(Value(std::nan(""))); }, ::testing::ThrowsMessage<Error>(HasSubstr("non-finite")));
  EXPECT_THROW(dump(Value(INFINITY)), Error);
}

TEST(Json, DocumentRoundTrip) {
  std::string text = R"({"vocab":{"a":0,"\u00e9":1,"\ud83d\ude00":2},"merges":["a b","c d"],)"
                     R"("nested":[[1,2.5,-3e-7],{"x":null,"y":false}],"s":"tab\tnew\nquote\"back\\"})";
  Value v = parse(text, "tok.json");
  EXPECT_EQ(parse(dump(v)), v);
  EXPECT_EQ(parse(dump_pretty(v, 4)), v);
  EXPECT_EQ(v.at("vocab").at("\xF0\x9F\x98\x80").as_int(), 2);
  EXPECT_EQ(v.at("merges").at(1).as_string(), "c d");
}

std::string key(int i) {
  std::string s = "k";
  s += std::to_string(i);
  return s;
}

TEST(Json, ObjectKeepsOrderAndFindsKeys) {
  // Enough keys to switch from linear search to the hash index.
  Object o;
  for (int i = 999; i >= 0; --i) ASSERT_TRUE(o.insert(key(i), Value(i)));
  EXPECT_FALSE(o.insert("k5", Value(0)));  // duplicates are refused
  EXPECT_EQ(o.size(), 1000u);
  EXPECT_EQ(o[0].key, "k999");  // insertion order, not sorted
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(o.find(key(i))->as_int(), i);
  EXPECT_EQ(o.find("missing"), nullptr);
  o.set("k999", Value("replaced"));
  EXPECT_EQ(o[0].value.as_string(), "replaced");
  // Duplicate detection in large parsed objects goes through the index too.
  std::string big = "{";
  for (int i = 0; i < 100; ++i) {
    big += '"';
    big += key(i);
    big += "\":1,";
  }
  big += "\"k42\":2}";
  EXPECT_THAT(error_of(big), HasSubstr("duplicate key \"k42\""));
}

TEST(Json, ValueCopiesAndMoves) {
  Value v = parse(R"({"a":[1,{"b":"c"}]})");
  Value copy = v;
  copy.as_object().set("a", 5);
  EXPECT_EQ(v.at("a").at(1).at("b").as_string(), "c");  // deep copy
  Value inner = parse(R"([[1,2],[3]])");
  inner = inner.as_array()[0];  // assigning from a part of itself
  EXPECT_EQ(dump(inner), "[1,2]");
  Value moved = std::move(copy);
  EXPECT_EQ(moved.at("a").as_int(), 5);
  EXPECT_THAT([&] { v.at("zzz"); }, ::testing::ThrowsMessage<Error>(HasSubstr("missing key \"zzz\"")));
  EXPECT_THAT([&] { v.as_string(); }, ::testing::ThrowsMessage<Error>(HasSubstr("expected a string, got object")));
  EXPECT_EQ(Value(size_t{7}).as_int(), 7);
  EXPECT_FALSE(Value(uint64_t{1} << 63).is_integer());
}

std::string ref_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Json, RefErrorsNameTheKeyPath) {
  Value v = parse(R"({"hidden_size":"4096","rope_scaling":{"factor":"x"},"layers":[{"name":1}],"n":2.5,"z":null})",
                  "config.json");
  Ref cfg(v, "config.json");
  EXPECT_EQ(ref_error([&] { cfg["hidden_size"].as_int(); }), "config.json: key \"hidden_size\" must be an integer, got string");
  EXPECT_EQ(ref_error([&] { cfg["rope_scaling"]["factor"].as_double(); }),
            "config.json: key \"rope_scaling.factor\" must be a number, got string");
  EXPECT_EQ(ref_error([&] { cfg["layers"][0]["name"].as_string(); }),
            "config.json: key \"layers[0].name\" must be a string, got number");
  EXPECT_EQ(ref_error([&] { cfg["layers"][3]; }), "config.json: key \"layers\" has 1 elements, index 3 is out of range");
  EXPECT_EQ(ref_error([&] { cfg["n"].as_int(); }), "config.json: key \"n\" must be an integer, got non-integer number 2.5");
  EXPECT_EQ(ref_error([&] { cfg["num_heads"]; }), "config.json: missing key \"num_heads\"");
  EXPECT_EQ(ref_error([&] { cfg["rope_scaling"]["type"]; }), "config.json: missing key \"rope_scaling.type\"");
  EXPECT_EQ(ref_error([&] { cfg["hidden_size"]["x"]; }), "config.json: key \"hidden_size\" must be an object, got string");
  Value arr = parse("[1]");
  EXPECT_EQ(ref_error([&] { Ref(arr, "config.json")["a"]; }), "config.json: top-level value must be an object, got array");
  // Optional keys: absent or null falls back; present with the wrong type is still an error.
  EXPECT_EQ(cfg.get_int("num_heads", 32), 32);
  EXPECT_EQ(cfg.get_double("z", 1.5), 1.5);
  EXPECT_EQ(cfg.get_string("absent", "dflt"), "dflt");
  EXPECT_EQ(ref_error([&] { cfg.get_bool("n", false); }), "config.json: key \"n\" must be a boolean, got number");
  EXPECT_TRUE(cfg.has("z"));
  EXPECT_FALSE(cfg.get("nope").has_value());
  EXPECT_EQ(cfg.keys().front(), "hidden_size");
  EXPECT_EQ(cfg["layers"].size(), 1u);
}

TEST(Json, JsonLinesReportFileLines) {
  auto rows = parse_jsonl("{\"a\":1}\n\n  \r\n[2]\r\n\"x\"", "data.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("a").as_int(), 1);
  EXPECT_EQ(rows[1].at(size_t{0}).as_int(), 2);
  EXPECT_EQ(rows[2].as_string(), "x");
  try {
    parse_jsonl("{\"a\":1}\n\n{\"b\" 2}\n", "data.jsonl");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "data.jsonl:3:6: expected ':' after the key");
  }
}

TEST(Json, ParseFileNamesTheFile) {
  EXPECT_THAT([] { parse_file("/nonexistent/dir/config.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("cannot open '/nonexistent/dir/config.json': No such file")));
  char tmpl[] = "/tmp/shardlab_json_XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  std::fputs("{\"a\": [1,\n 2,,]}", f);
  std::fclose(f);
  std::string msg = ref_error([&] { parse_file(tmpl); });
  std::remove(tmpl);
  EXPECT_EQ(msg, std::string(tmpl) + ":2:4: expected a value");
}

TEST(Json, ParsesALargeTokenizerLikeDocument) {
  // Shape of a tokenizer.json: a big vocab object and a big merges array. Checks content, not time.
  std::string text = "{\"model\":{\"vocab\":{";
  const int n = 50000;
  for (int i = 0; i < n; ++i) text += (i ? ",\"" : "\"") + std::string("tok\\u0120") + std::to_string(i) + "\":" + std::to_string(i);
  text += "},\"merges\":[";
  for (int i = 0; i < n; ++i) text += (i ? ",\"" : "\"") + std::to_string(i) + " x\"";
  text += "]}}";
  Value v = parse(text, "tokenizer.json");
  const Object& vocab = v.at("model").at("vocab").as_object();
  ASSERT_EQ(vocab.size(), static_cast<size_t>(n));
  EXPECT_EQ(vocab.find("tok\xC4\xA0" "12345")->as_int(), 12345);
  EXPECT_EQ(v.at("model").at("merges").size(), static_cast<size_t>(n));
}

}  // namespace
}  // namespace shardlab::json

// JSON: a value type, a strict single-pass parser and a writer, for Hugging Face config.json and
// tokenizer.json, safetensors headers, JSONL datasets and DeepSpeed configs. Ref adds typed
// accessors whose errors name the file and the key path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace shardlab::json {

enum class Type : uint8_t { null, boolean, number, string, array, object };
const char* type_name(Type t);  // "null", "boolean", "number", "string", "array", "object"

// Nesting deeper than this is a parse error, so hostile input cannot exhaust the stack.
inline constexpr int kMaxDepth = 512;

class Value;
class Object;
using Array = std::vector<Value>;

// One JSON value. Numbers keep the double and, when the literal was an integer that fits in
// int64, the exact int64 too (token ids and sizes above 2^53 stay exact).
class Value {
 public:
  Value() noexcept {}
  Value(std::nullptr_t) noexcept {}
  Value(bool b) noexcept : type_(Type::boolean) { u_.b = b; }
  // Every integer type, so that sizes (size_t) and ids convert without ambiguity; unsigned
  // values above INT64_MAX keep only the double.
  Value(int v) noexcept { set_int(v); }
  Value(long v) noexcept { set_int(v); }
  Value(long long v) noexcept { set_int(v); }
  Value(unsigned v) noexcept { set_int(static_cast<int64_t>(v)); }
  Value(unsigned long v) noexcept { set_uint(v); }
  Value(unsigned long long v) noexcept { set_uint(v); }
  Value(double v) noexcept : type_(Type::number) { u_.num = {0, v}; }
  Value(const char* s) : Value(std::string(s)) {}
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(std::string s);
  Value(Array a);
  Value(Object o);
  static Value array() { return Value(Array{}); }
  static Value object();

  Value(const Value& other);
  Value(Value&& other) noexcept;
  Value& operator=(const Value& other);
  Value& operator=(Value&& other) noexcept;
  ~Value() { destroy(); }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  bool is_integer() const { return type_ == Type::number && is_int_; }  // an integer literal in int64 range
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // Accessors throw shardlab::Error ("expected an integer, got string") on the wrong type; Ref
  // gives the same checks with the file and key path in the message.
  bool as_bool() const;
  // Integer literals, and doubles that hold an integer exactly (e.g. 4096.0 or 1e3).
  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // Conveniences for objects and arrays.
  const Value* find(std::string_view key) const;  // nullptr when absent (or not an object)
  const Value& at(std::string_view key) const;    // throws 'missing key "k"'
  const Value& at(size_t index) const;            // throws on out of range
  size_t size() const;                            // elements of an array / members of an object
  void push_back(Value v);                        // arrays only
  Value& set(std::string key, Value v);           // objects only: insert or replace

  bool operator==(const Value& other) const;

 private:
  void set_int(int64_t v) noexcept {
    type_ = Type::number;
    is_int_ = true;
    u_.num = {v, static_cast<double>(v)};
  }
  void set_uint(unsigned long long v) noexcept {
    if (v <= static_cast<unsigned long long>(INT64_MAX)) return set_int(static_cast<int64_t>(v));
    type_ = Type::number;
    u_.num = {0, static_cast<double>(v)};
  }
  void destroy() noexcept;
  void copy_from(const Value& other);
  void move_from(Value& other) noexcept;

  Type type_ = Type::null;
  bool is_int_ = false;
  union U {
    U() {}
    ~U() {}
    bool b;
    struct {
      int64_t i;
      double d;
    } num;
    std::string* str;
    Array* arr;
    Object* obj;
  } u_;
};

struct Member {
  std::string key;
  Value value;
};

// A JSON object: members in insertion order, with a hash index for lookups once it grows past a
// few members (tokenizer vocabularies hold >100k keys).
class Object {
 public:
  size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Appends key; returns false and changes nothing when the key already exists.
  bool insert(std::string key, Value value);
  Value& set(std::string key, Value value);  // insert or replace
  void reserve(size_t n) { members_.reserve(n); }

  std::vector<Member>::const_iterator begin() const { return members_.begin(); }
  std::vector<Member>::const_iterator end() const { return members_.end(); }
  std::vector<Member>::iterator begin() { return members_.begin(); }
  std::vector<Member>::iterator end() { return members_.end(); }
  const Member& operator[](size_t i) const { return members_[i]; }

  bool operator==(const Object& other) const;  // same members in the same order

 private:
  int64_t find_index(std::string_view key) const;
  void index_member(uint32_t i);
  void rebuild_index();

  std::vector<Member> members_;
  std::vector<uint32_t> index_;  // open addressing over member positions + 1 (0 = empty slot)
};

// ---- parsing ----
// Strict RFC 8259: no comments, trailing commas, NaN, leading zeros or invalid UTF-8; duplicate
// keys are an error. Errors read "<source>:<line>:<column>: <reason>".
Value parse(std::string_view text, std::string_view source = "<json>");
Value parse_file(const std::string& path);  // the path is the source name
// One value per non-blank line; errors carry the line number in the file.
std::vector<Value> parse_jsonl(std::string_view text, std::string_view source = "<jsonl>");

// ---- writing ----
std::string dump(const Value& v);                       // compact: {"a":1,"b":[true,null]}
std::string dump_pretty(const Value& v, int indent = 2);  // one member per line, like json.dumps(indent=2)
void dump_to(std::string& out, const Value& v, int indent = -1);  // indent < 0: compact
void append_quoted(std::string& out, std::string_view s);  // a JSON string literal with escapes

// A value plus where it came from, for typed access with errors such as
//   config.json: key "rope_scaling.factor" must be a number, got string
// Refs copy the path, so they are cheap enough for configs; hot loops (a tokenizer's vocabulary)
// should walk Value/Object directly.
class Ref {
 public:
  Ref(const Value& value, std::string source, std::string path = {})
      : value_(&value), source_(std::move(source)), path_(std::move(path)) {}

  const Value& value() const { return *value_; }
  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }  // "" for the top-level value

  Type type() const { return value_->type(); }
  bool is_null() const { return value_->is_null(); }
  bool has(std::string_view key) const;        // this must be an object
  Ref operator[](std::string_view key) const;  // a required key of an object
  Ref operator[](size_t index) const;          // an element of an array
  std::optional<Ref> get(std::string_view key) const;  // absent -> nullopt
  size_t size() const;                          // array or object
  std::vector<std::string> keys() const;        // object keys in file order

  bool as_bool() const;
  int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Optional keys: the fallback when the key is absent or null, else the typed value.
  bool get_bool(std::string_view key, bool fallback) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_double(std::string_view key, double fallback) const;
  std::string get_string(std::string_view key, std::string fallback) const;

  // Throws "<source>: key "<path>" <reason>" (or "<source>: top-level value <reason>").
  [[noreturn]] void fail(std::string_view reason) const;

 private:
  void expect(Type t, const char* what) const;
  std::string child_path(std::string_view key) const;

  const Value* value_;
  std::string source_;
  std::string path_;
};

}  // namespace shardlab::json

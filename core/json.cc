// JSON values, objects with a hash index, the writer and Ref's typed accessors. The parser lives
// in core/json_parse.cc.
#include "core/json.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>

namespace shardlab::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::null: return "null";
    case Type::boolean: return "boolean";
    case Type::number: return "number";
    case Type::string: return "string";
    case Type::array: return "array";
    case Type::object: return "object";
  }
  return "?";
}

// ---- Value: a tagged union; strings, arrays and objects live on the heap ----

Value::Value(std::string s) : type_(Type::string) { u_.str = new std::string(std::move(s)); }
Value::Value(Array a) : type_(Type::array) { u_.arr = new Array(std::move(a)); }
Value::Value(Object o) : type_(Type::object) { u_.obj = new Object(std::move(o)); }
Value Value::object() { return Value(Object{}); }

void Value::destroy() noexcept {
  switch (type_) {
    case Type::string: delete u_.str; break;
    case Type::array: delete u_.arr; break;
    case Type::object: delete u_.obj; break;
    default: break;
  }
  type_ = Type::null;
  is_int_ = false;
}

void Value::copy_from(const Value& other) {
  switch (other.type_) {
    case Type::string: u_.str = new std::string(*other.u_.str); break;
    case Type::array: u_.arr = new Array(*other.u_.arr); break;
    case Type::object: u_.obj = new Object(*other.u_.obj); break;
    case Type::boolean: u_.b = other.u_.b; break;
    case Type::number: u_.num = other.u_.num; break;
    case Type::null: break;
  }
  type_ = other.type_;
  is_int_ = other.is_int_;
}

void Value::move_from(Value& other) noexcept {
  std::memcpy(static_cast<void*>(&u_), &other.u_, sizeof(u_));  // pointers move as bits
  type_ = other.type_;
  is_int_ = other.is_int_;
  other.type_ = Type::null;
  other.is_int_ = false;
}

Value::Value(const Value& other) { copy_from(other); }
Value::Value(Value&& other) noexcept { move_from(other); }
Value& Value::operator=(const Value& other) {
  if (this != &other) {
    Value copy(other);  // copy first: `other` may live inside *this
    destroy();
    move_from(copy);
  }
  return *this;
}
Value& Value::operator=(Value&& other) noexcept {
  if (this != &other) {
    Value tmp(std::move(other));  // `other` may live inside *this
    destroy();
    move_from(tmp);
  }
  return *this;
}

namespace {
[[noreturn]] void wrong_type(const char* expected, const Value& v) {
  SL_FAIL("json: expected ", expected, ", got ", type_name(v.type()));
}
// The integer a number holds exactly, if any.
bool exact_int(const Value& v, int64_t* out) {
  if (v.is_integer()) {
    *out = v.as_int();
    return true;
  }
  double d = v.as_double();
  // 2^63 is exactly representable; anything >= it does not fit.
  if (std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    *out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}
}  // namespace

bool Value::as_bool() const {
  if (type_ != Type::boolean) wrong_type("a boolean", *this);
  return u_.b;
}
int64_t Value::as_int() const {
  if (type_ != Type::number) wrong_type("an integer", *this);
  if (is_int_) return u_.num.i;
  int64_t i;
  if (!exact_int(*this, &i)) SL_FAIL("json: expected an integer, got non-integer number ", u_.num.d);
  return i;
}
double Value::as_double() const {
  if (type_ != Type::number) wrong_type("a number", *this);
  return u_.num.d;
}
const std::string& Value::as_string() const {
  if (type_ != Type::string) wrong_type("a string", *this);
  return *u_.str;
}
const Array& Value::as_array() const {
  if (type_ != Type::array) wrong_type("an array", *this);
  return *u_.arr;
}
Array& Value::as_array() {
  if (type_ != Type::array) wrong_type("an array", *this);
  return *u_.arr;
}
const Object& Value::as_object() const {
  if (type_ != Type::object) wrong_type("an object", *this);
  return *u_.obj;
}
Object& Value::as_object() {
  if (type_ != Type::object) wrong_type("an object", *this);
  return *u_.obj;
}

const Value* Value::find(std::string_view key) const {
  return type_ == Type::object ? u_.obj->find(key) : nullptr;
}
const Value& Value::at(std::string_view key) const {
  const Value* v = as_object().find(key);
  if (!v) SL_FAIL("json: missing key \"", key, "\"");
  return *v;
}
const Value& Value::at(size_t index) const {
  const Array& a = as_array();
  if (index >= a.size()) SL_FAIL("json: index ", index, " out of range for an array of ", a.size());
  return a[index];
}
size_t Value::size() const {
  if (type_ == Type::array) return u_.arr->size();
  if (type_ == Type::object) return u_.obj->size();
  wrong_type("an array or object", *this);
}
void Value::push_back(Value v) { as_array().push_back(std::move(v)); }
Value& Value::set(std::string key, Value v) { return as_object().set(std::move(key), std::move(v)); }

bool Value::operator==(const Value& other) const {
  if (type_ != other.type_) return false;
  switch (type_) {
    case Type::null: return true;
    case Type::boolean: return u_.b == other.u_.b;
    case Type::number:
      if (is_int_ && other.is_int_) return u_.num.i == other.u_.num.i;
      return u_.num.d == other.u_.num.d;
    case Type::string: return *u_.str == *other.u_.str;
    case Type::array: return *u_.arr == *other.u_.arr;
    case Type::object: return *u_.obj == *other.u_.obj;
  }
  return false;
}

// ---- Object: members in order plus an open-addressing index (built past kLinearMax) ----

namespace {
constexpr size_t kLinearMax = 8;
size_t hash_key(std::string_view key) { return std::hash<std::string_view>{}(key); }
}  // namespace

int64_t Object::find_index(std::string_view key) const {
  if (index_.empty()) {
    for (size_t i = 0; i < members_.size(); ++i)
      if (members_[i].key == key) return static_cast<int64_t>(i);
    return -1;
  }
  size_t mask = index_.size() - 1;
  for (size_t slot = hash_key(key) & mask;; slot = (slot + 1) & mask) {
    uint32_t entry = index_[slot];
    if (entry == 0) return -1;
    if (members_[entry - 1].key == key) return entry - 1;
  }
}

void Object::index_member(uint32_t i) {
  size_t mask = index_.size() - 1;
  size_t slot = hash_key(members_[i].key) & mask;
  while (index_[slot] != 0) slot = (slot + 1) & mask;
  index_[slot] = i + 1;
}

void Object::rebuild_index() {
  size_t cap = 16;
  while (cap < members_.size() * 2) cap *= 2;  // load factor <= 1/2
  index_.assign(cap, 0);
  for (uint32_t i = 0; i < members_.size(); ++i) index_member(i);
}

const Value* Object::find(std::string_view key) const {
  int64_t i = find_index(key);
  return i < 0 ? nullptr : &members_[static_cast<size_t>(i)].value;
}
Value* Object::find(std::string_view key) {
  int64_t i = find_index(key);
  return i < 0 ? nullptr : &members_[static_cast<size_t>(i)].value;
}

bool Object::insert(std::string key, Value value) {
  if (find_index(key) >= 0) return false;
  members_.push_back(Member{std::move(key), std::move(value)});
  if (members_.size() > kLinearMax) {
    if (members_.size() * 2 > index_.size()) rebuild_index();
    else index_member(static_cast<uint32_t>(members_.size() - 1));
  }
  return true;
}

Value& Object::set(std::string key, Value value) {
  if (Value* v = find(key)) return *v = std::move(value);
  insert(std::move(key), std::move(value));
  return members_.back().value;
}

bool Object::operator==(const Object& other) const {
  if (members_.size() != other.members_.size()) return false;
  for (size_t i = 0; i < members_.size(); ++i)
    if (members_[i].key != other.members_[i].key || !(members_[i].value == other.members_[i].value)) return false;
  return true;
}

// ---- writer ----

void append_quoted(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out.push_back('"');
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    out.push_back('\\');
    switch (c) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '\b': out.push_back('b'); break;
      case '\f': out.push_back('f'); break;
      case '\n': out.push_back('n'); break;
      case '\r': out.push_back('r'); break;
      case '\t': out.push_back('t'); break;
      default:
        out.append("u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

namespace {
void append_number(std::string& out, const Value& v) {
  char buf[32];
  if (v.is_integer()) {
    auto r = std::to_chars(buf, buf + sizeof(buf), v.as_int());
    out.append(buf, r.ptr);
    return;
  }
  double d = v.as_double();
  SL_CHECK(std::isfinite(d), "json: cannot write the non-finite number ", d, " (JSON has no NaN or Infinity)");
  auto r = std::to_chars(buf, buf + sizeof(buf), d);  // shortest form that round-trips
  out.append(buf, r.ptr);
  // Keep doubles doubles across a round trip: 1.0 prints as "1", which would re-parse as an integer.
  bool all_digits = true;
  for (const char* c = buf; c != r.ptr; ++c) all_digits &= (*c == '-' || (*c >= '0' && *c <= '9'));
  if (all_digits) out.append(".0");
}

void newline(std::string& out, int indent, int depth) {
  out.push_back('\n');
  out.append(static_cast<size_t>(indent) * static_cast<size_t>(depth), ' ');
}

void write(std::string& out, const Value& v, int indent, int depth) {
  switch (v.type()) {
    case Type::null: out.append("null"); return;
    case Type::boolean: out.append(v.as_bool() ? "true" : "false"); return;
    case Type::number: append_number(out, v); return;
    case Type::string: append_quoted(out, v.as_string()); return;
    case Type::array: {
      const Array& a = v.as_array();
      out.push_back('[');
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out.push_back(',');
        if (indent >= 0) newline(out, indent, depth + 1);
        write(out, a[i], indent, depth + 1);
      }
      if (indent >= 0 && !a.empty()) newline(out, indent, depth);
      out.push_back(']');
      return;
    }
    case Type::object: {
      const Object& o = v.as_object();
      out.push_back('{');
      for (size_t i = 0; i < o.size(); ++i) {
        if (i) out.push_back(',');
        if (indent >= 0) newline(out, indent, depth + 1);
        append_quoted(out, o[i].key);
        out.append(indent >= 0 ? ": " : ":");
        write(out, o[i].value, indent, depth + 1);
      }
      if (indent >= 0 && !o.empty()) newline(out, indent, depth);
      out.push_back('}');
      return;
    }
  }
}
}  // namespace

void dump_to(std::string& out, const Value& v, int indent) { write(out, v, indent, 0); }
std::string dump(const Value& v) {
  std::string out;
  write(out, v, -1, 0);
  return out;
}
std::string dump_pretty(const Value& v, int indent) {
  std::string out;
  write(out, v, indent < 0 ? 0 : indent, 0);
  return out;
}

// ---- Ref ----

void Ref::fail(std::string_view reason) const {
  if (path_.empty()) SL_FAIL(source_, ": top-level value ", reason);
  SL_FAIL(source_, ": key \"", path_, "\" ", reason);
}

void Ref::expect(Type t, const char* what) const {
  if (value_->type() != t) fail(std::string("must be ") + what + ", got " + type_name(value_->type()));
}

std::string Ref::child_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  std::string p = path_;
  p.push_back('.');
  p.append(key);
  return p;
}

bool Ref::has(std::string_view key) const {
  expect(Type::object, "an object");
  return value_->as_object().contains(key);
}

std::optional<Ref> Ref::get(std::string_view key) const {
  expect(Type::object, "an object");
  const Value* v = value_->as_object().find(key);
  if (!v) return std::nullopt;
  return Ref(*v, source_, child_path(key));
}

Ref Ref::operator[](std::string_view key) const {
  std::optional<Ref> r = get(key);
  if (!r) SL_FAIL(source_, ": missing key \"", child_path(key), "\"");
  return *r;
}

Ref Ref::operator[](size_t index) const {
  expect(Type::array, "an array");
  const Array& a = value_->as_array();
  if (index >= a.size()) fail("has " + std::to_string(a.size()) + " elements, index " + std::to_string(index) + " is out of range");
  return Ref(a[index], source_, path_ + "[" + std::to_string(index) + "]");
}

size_t Ref::size() const {
  if (!value_->is_array() && !value_->is_object())
    fail(std::string("must be an array or object, got ") + type_name(value_->type()));
  return value_->size();
}

std::vector<std::string> Ref::keys() const {
  expect(Type::object, "an object");
  std::vector<std::string> out;
  for (const Member& m : value_->as_object()) out.push_back(m.key);
  return out;
}

bool Ref::as_bool() const {
  expect(Type::boolean, "a boolean");
  return value_->as_bool();
}
int64_t Ref::as_int() const {
  expect(Type::number, "an integer");
  int64_t i;
  if (!exact_int(*value_, &i)) fail("must be an integer, got non-integer number " + dump(*value_));
  return i;
}
double Ref::as_double() const {
  expect(Type::number, "a number");
  return value_->as_double();
}
const std::string& Ref::as_string() const {
  expect(Type::string, "a string");
  return value_->as_string();
}
const Array& Ref::as_array() const {
  expect(Type::array, "an array");
  return value_->as_array();
}
const Object& Ref::as_object() const {
  expect(Type::object, "an object");
  return value_->as_object();
}

bool Ref::get_bool(std::string_view key, bool fallback) const {
  std::optional<Ref> r = get(key);
  return r && !r->is_null() ? r->as_bool() : fallback;
}
int64_t Ref::get_int(std::string_view key, int64_t fallback) const {
  std::optional<Ref> r = get(key);
  return r && !r->is_null() ? r->as_int() : fallback;
}
double Ref::get_double(std::string_view key, double fallback) const {
  std::optional<Ref> r = get(key);
  return r && !r->is_null() ? r->as_double() : fallback;
}
std::string Ref::get_string(std::string_view key, std::string fallback) const {
  std::optional<Ref> r = get(key);
  return r && !r->is_null() ? r->as_string() : fallback;
}

}  // namespace shardlab::json

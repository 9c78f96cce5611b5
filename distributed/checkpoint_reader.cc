// Reading sharded checkpoints: index.json checked against its shard files (every piece present
// with the right size, every tensor's ranges tiling it), and ranges copied out of the memory-mapped
// pieces without loading whole files (see sharded_checkpoint.h).
#include <algorithm>
#include <filesystem>

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "distributed/sharded_checkpoint.h"

namespace shardlab::dist {

namespace fs = std::filesystem;

namespace {

Shape shape_of(const json::Value& v) {
  Shape s;
  for (const json::Value& d : v.as_array()) s.push_back(d.as_int());
  return s;
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string describe(const std::string& name, const std::string& state) {
  return state.empty() ? "parameter '" + name + "'" : "optimizer state '" + state + "' of '" + name + "'";
}

}  // namespace

ShardedCheckpoint ShardedCheckpoint::open(const std::string& dir) {
  const fs::path index_path = fs::path(dir) / kShardedIndexFile;
  SL_CHECK(fs::exists(index_path), "sharded checkpoint: ", index_path.string(), " is missing (not a sharded ",
           "checkpoint, or its save did not finish)");
  ShardedCheckpoint c;
  c.dir_ = dir;
  c.index_ = json::parse_file(index_path.string());
  const json::Value* format = c.index_.find("format");
  SL_CHECK(format != nullptr && format->is_string() && format->as_string() == kShardedFormat, index_path.string(),
           ": format is not \"", kShardedFormat, "\"");
  const int64_t version = c.index_.at("version").as_int();
  SL_CHECK(version == kShardedFormatVersion, index_path.string(), ": format version ", version,
           " is not supported (this build reads version ", kShardedFormatVersion, ")");
  for (const json::Value& f : c.index_.at("files").as_array()) {
    const fs::path path = fs::path(dir) / f.as_string();
    SL_CHECK(fs::exists(path), "sharded checkpoint: shard file ", path.string(), " named by ", index_path.string(),
             " is missing");
    c.files_.push_back(f.as_string());
    c.shards_.push_back(SafetensorsFile::open(path.string()));  // a truncated file fails here, named
  }
  auto check_tensor = [&](const std::string& name, const std::string& state, const json::Value& e) {
    const int64_t numel = numel_of(shape_of(e.at("shape")));
    int64_t next = 0;
    for (const json::Value& piece : e.at("pieces").as_array()) {
      const int64_t begin = piece.at("begin").as_int(), end = piece.at("end").as_int();
      SL_CHECK(begin == next, "sharded checkpoint ", dir, ": ", describe(name, state), " has ",
               begin > next ? "no piece for" : "overlapping pieces at", " elements [", std::min(begin, next), ", ",
               std::max(begin, next), ") of ", numel);
      const auto file = std::find(c.files_.begin(), c.files_.end(), piece.at("file").as_string());
      SL_CHECK(file != c.files_.end(), "sharded checkpoint ", dir, ": ", describe(name, state), " names file '",
               piece.at("file").as_string(), "' that is not among the index's files");
      const SafetensorsFile& shard = c.shards_[file - c.files_.begin()];
      const std::string& key = piece.at("key").as_string();
      SL_CHECK(shard.contains(key), "sharded checkpoint: ", shard.path(), " has no piece '", key, "' (",
               describe(name, state), ")");
      SL_CHECK(shard.info(key).shape == Shape{end - begin}, "sharded checkpoint: piece '", key, "' in ", shard.path(),
               " has shape ", shape_str(shard.info(key).shape), " but the index says [", begin, ", ", end, ")");
      next = end;
    }
    SL_CHECK(next == numel, "sharded checkpoint ", dir, ": ", describe(name, state), " has no piece for elements [",
             next, ", ", numel, ")");
  };
  for (const json::Member& m : c.index_.at("parameters").as_object()) check_tensor(m.key, "", m.value);
  for (const json::Member& kind : c.index_.at("optimizer_state").as_object())
    for (const json::Member& m : kind.value.as_object()) check_tensor(m.key, kind.key, m.value);
  return c;
}

std::vector<std::string> ShardedCheckpoint::parameter_names() const {
  std::vector<std::string> out;
  for (const json::Member& m : index_.at("parameters").as_object()) out.push_back(m.key);
  return out;
}

std::vector<std::string> ShardedCheckpoint::state_kinds() const {
  std::vector<std::string> out;
  for (const json::Member& m : index_.at("optimizer_state").as_object()) out.push_back(m.key);
  return out;
}

int64_t ShardedCheckpoint::optimizer_step() const { return index_.at("optimizer").at("step").as_int(); }

bool ShardedCheckpoint::has_parameter(const std::string& name) const {
  return index_.at("parameters").find(name) != nullptr;
}

Shape ShardedCheckpoint::shape(const std::string& name) const { return shape_of(entry(name, "").at("shape")); }

const json::Value& ShardedCheckpoint::entry(const std::string& name, const std::string& state) const {
  const json::Value& group = state.empty() ? index_.at("parameters") : [&]() -> const json::Value& {
    const json::Value* g = index_.at("optimizer_state").find(state);
    SL_CHECK(g != nullptr, "sharded checkpoint ", dir_, ": no optimizer state '", state, "'");
    return *g;
  }();
  const json::Value* e = group.find(name);
  SL_CHECK(e != nullptr, "sharded checkpoint ", dir_, ": no ", describe(name, state));
  return *e;
}

void ShardedCheckpoint::read_range(const std::string& name, const std::string& state, int64_t begin,
                                   const Tensor& out) const {
  NoGradGuard no_grad;
  const json::Value& e = entry(name, state);
  const int64_t end = begin + out.numel();
  SL_CHECK(out.dim() == 1 && begin >= 0 && end <= numel_of(shape_of(e.at("shape"))), "sharded checkpoint: range [",
           begin, ", ", end, ") of ", describe(name, state), " (shape ", shape_str(shape_of(e.at("shape"))),
           ") is out of bounds");
  for (const json::Value& piece : e.at("pieces").as_array()) {
    const int64_t p_begin = piece.at("begin").as_int(), p_end = piece.at("end").as_int();
    const int64_t lo = std::max(begin, p_begin), hi = std::min(end, p_end);
    if (lo >= hi) continue;
    const size_t file = std::find(files_.begin(), files_.end(), piece.at("file").as_string()) - files_.begin();
    const SafetensorsFile& shard = shards_[file];
    const std::string& key = piece.at("key").as_string();
    // A view of the mapped bytes (read only: copy_ reads it), so no piece is loaded whole.
    const std::string_view bytes = shard.bytes(key);
    Tensor mapped = Tensor::from_blob(const_cast<char*>(bytes.data()), {p_end - p_begin}, shard.info(key).dtype);
    ops::copy_(ops::narrow(out, 0, lo - begin, hi - lo), ops::narrow(mapped, 0, lo - p_begin, hi - lo));
  }
}

Tensor ShardedCheckpoint::read_parameter(const std::string& name, DType dtype) const {
  const Shape s = shape(name);
  Tensor out = Tensor::empty(s, dtype);
  read_range(name, "", 0, ops::reshape(out, {numel_of(s)}));
  return out;
}

}  // namespace shardlab::dist

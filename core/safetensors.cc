// safetensors reading (mmap + full header validation), writing (the safetensors library's layout,
// atomically) and sharded checkpoints resolved through model.safetensors.index.json.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "core/atomic_file.h"
#include "core/ops/views.h"

namespace shardlab {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this host");

namespace {

// The safetensors library rejects headers above 100 MB; so do we, before parsing anything.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct FileDType {
  const char* name;
  int bytes;       // per element
  bool supported;  // shardlab has a dtype for it
  DType dtype;
  int align_rank;  // position in the safetensors library's Dtype enum (increasing alignment)
};

// Every dtype the safetensors spec names. Those without a shardlab dtype are recognised so the
// error can say "not supported" rather than "unknown".
constexpr FileDType kFileDTypes[] = {
    {"BOOL", 1, true, DType::u8, 0},       {"F4", 1, false, DType::u8, 1},
    {"F6_E2M3", 1, false, DType::u8, 2},   {"F6_E3M2", 1, false, DType::u8, 3},
    {"U8", 1, true, DType::u8, 4},         {"I8", 1, true, DType::i8, 5},
    {"F8_E5M2", 1, false, DType::u8, 6},   {"F8_E4M3", 1, false, DType::u8, 7},
    {"F8_E8M0", 1, false, DType::u8, 8},   {"I16", 2, false, DType::u8, 9},
    {"U16", 2, false, DType::u8, 10},      {"F16", 2, true, DType::f16, 11},
    {"BF16", 2, true, DType::bf16, 12},    {"I32", 4, true, DType::i32, 13},
    {"U32", 4, false, DType::u8, 14},      {"F32", 4, true, DType::f32, 15},
    {"C64", 8, false, DType::u8, 16},      {"F64", 8, true, DType::f64, 17},
    {"I64", 8, true, DType::i64, 18},      {"U64", 8, false, DType::u8, 19},
};

const FileDType* find_file_dtype(std::string_view name) {
  for (const FileDType& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// The file dtype a shardlab dtype is written as (u8 is U8, never BOOL), or nullptr (nf4).
const FileDType* file_dtype_for(DType dtype) {
  for (const FileDType& d : kFileDTypes)
    if (d.supported && d.dtype == dtype && std::string_view(d.name) != "BOOL") return &d;
  return nullptr;
}

// a * b, or false on uint64 overflow.
bool mul_checked(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  const FileDType* fd = file_dtype_for(dtype);
  if (!fd) SL_FAIL("safetensors: dtype ", dtype_name(dtype), " cannot be stored in safetensors");
  return fd->name;
}

// ---- reading ----

struct SafetensorsFile::State {
  std::string path;
  void* map = nullptr;
  size_t map_size = 0;
  const char* data = nullptr;  // the data buffer, right after the header
  uint64_t data_size = 0;
  std::vector<SafetensorsTensorInfo> tensors;  // offset order
  std::map<std::string, size_t, std::less<>> index;
  std::map<std::string, std::string> metadata;

  ~State() {
    if (map) ::munmap(map, map_size);
  }
};

namespace {

// Parses and checks one header entry; every error names the file and the tensor.
SafetensorsTensorInfo parse_entry(const std::string& path, const std::string& name, const json::Value& v) {
  auto bad = [&](const auto&... parts) { SL_FAIL(path, ": tensor \"", name, "\": ", parts...); };
  if (!v.is_object()) bad("header entry must be an object, got ", json::type_name(v.type()));
  for (const json::Member& m : v.as_object())
    if (m.key != "dtype" && m.key != "shape" && m.key != "data_offsets") bad("unexpected key \"", m.key, "\" in the header entry");

  SafetensorsTensorInfo info;
  info.name = name;
  const json::Value* dt = v.find("dtype");
  if (!dt || !dt->is_string()) bad("\"dtype\" must be a string");
  info.file_dtype = dt->as_string();
  const FileDType* fd = find_file_dtype(info.file_dtype);
  if (!fd) bad("unknown dtype \"", info.file_dtype, "\"");
  if (!fd->supported)
    bad("dtype ", fd->name, " is not supported by shardlab (supported: F64, F32, F16, BF16, I64, I32, I8, U8, BOOL)");
  info.dtype = fd->dtype;

  const json::Value* shape = v.find("shape");
  if (!shape || !shape->is_array()) bad("\"shape\" must be an array of non-negative integers");
  uint64_t numel = 1;
  // Strides multiply the non-zero sizes even when a zero size makes numel 0: they must fit int64 too.
  uint64_t extent = 1;
  for (const json::Value& d : shape->as_array()) {
    if (!d.is_integer() || d.as_int() < 0) bad("\"shape\" must be an array of non-negative integers, got ", json::dump(*shape));
    info.shape.push_back(d.as_int());
    if (!mul_checked(numel, static_cast<uint64_t>(d.as_int()), &numel)) bad("shape ", json::dump(*shape), " overflows");
    if (!mul_checked(extent, static_cast<uint64_t>(std::max<int64_t>(d.as_int(), 1)), &extent) ||
        extent > static_cast<uint64_t>(INT64_MAX))
      bad("shape ", json::dump(*shape), " overflows");
  }

  const json::Value* off = v.find("data_offsets");
  if (!off || !off->is_array() || off->size() != 2 || !off->at(size_t{0}).is_integer() || !off->at(1).is_integer() ||
      off->at(size_t{0}).as_int() < 0 || off->at(1).as_int() < 0)
    bad("\"data_offsets\" must be [begin, end] with non-negative integers");
  info.begin = static_cast<uint64_t>(off->at(size_t{0}).as_int());
  info.end = static_cast<uint64_t>(off->at(1).as_int());
  if (info.begin > info.end) bad("data_offsets [", info.begin, ", ", info.end, "] are out of order (begin > end)");

  uint64_t nbytes;
  if (!mul_checked(numel, static_cast<uint64_t>(fd->bytes), &nbytes)) bad("shape ", json::dump(*shape), " overflows");
  if (info.end - info.begin != nbytes)
    bad("shape ", shape_str(info.shape), " of ", fd->name, " needs ", nbytes, " bytes but data_offsets [", info.begin,
        ", ", info.end, "] span ", info.end - info.begin);
  return info;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto state = std::make_shared<State>();
  state->path = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) SL_FAIL("cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    SL_FAIL("cannot read '", path, "': ", std::strerror(err));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    SL_FAIL(path, ": file is too small for safetensors (", file_size, " bytes; the header length alone takes 8)");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) SL_FAIL("cannot map '", path, "': ", std::strerror(map_err));
  state->map = map;
  state->map_size = file_size;
  const char* bytes = static_cast<const char*>(map);

  uint64_t header_len;
  std::memcpy(&header_len, bytes, 8);  // little-endian u64 (checked above)
  if (header_len > kMaxHeaderBytes)
    SL_FAIL(path, ": header length ", header_len, " exceeds the ", kMaxHeaderBytes, "-byte limit (corrupt file?)");
  if (header_len > file_size - 8)
    SL_FAIL(path, ": header length ", header_len, " is larger than the file (", file_size, " bytes)");
  state->data = bytes + 8 + header_len;
  state->data_size = file_size - 8 - header_len;

  json::Value header = json::parse(std::string_view(bytes + 8, header_len), path + " header");
  if (!header.is_object()) SL_FAIL(path, ": header must be a JSON object, got ", json::type_name(header.type()));
  for (const json::Member& m : header.as_object()) {
    if (m.key == "__metadata__") {
      if (!m.value.is_object()) SL_FAIL(path, ": \"__metadata__\" must be an object of strings");
      for (const json::Member& kv : m.value.as_object()) {
        if (!kv.value.is_string())
          SL_FAIL(path, ": \"__metadata__\" value for \"", kv.key, "\" must be a string, got ", json::type_name(kv.value.type()));
        state->metadata.emplace(kv.key, kv.value.as_string());
      }
      continue;
    }
    state->tensors.push_back(parse_entry(path, m.key, m.value));  // duplicate names fail in json::parse
  }

  // The tensors must tile the data buffer exactly: in offset order, each starts where the last ended.
  auto& ts = state->tensors;
  std::sort(ts.begin(), ts.end(), [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const SafetensorsTensorInfo& t = ts[i];
    if (t.begin < covered)
      SL_FAIL(path, ": tensor \"", t.name, "\" (data_offsets [", t.begin, ", ", t.end, "]) overlaps tensor \"",
              ts[i - 1].name, "\" (data_offsets [", ts[i - 1].begin, ", ", ts[i - 1].end, "])");
    if (t.begin > covered)
      SL_FAIL(path, ": data bytes [", covered, ", ", t.begin, ") belong to no tensor (gap before tensor \"", t.name, "\")");
    covered = t.end;
  }
  if (covered > state->data_size)
    SL_FAIL(path, ": file is truncated: tensor \"", ts.back().name, "\" ends at byte ", covered,
            " of the data buffer but only ", state->data_size, " bytes follow the header");
  if (covered < state->data_size)
    SL_FAIL(path, ": the data buffer holds ", state->data_size, " bytes but the tensors cover only ", covered,
            " (trailing bytes after the last tensor)");
  for (size_t i = 0; i < ts.size(); ++i) state->index.emplace(ts[i].name, i);

  SafetensorsFile f;
  f.state_ = std::move(state);
  return f;
}

const std::string& SafetensorsFile::path() const { return state_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(state_->tensors.size());
  for (const auto& t : state_->tensors) out.push_back(t.name);
  return out;
}

bool SafetensorsFile::contains(std::string_view name) const { return state_->index.find(name) != state_->index.end(); }

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  auto it = state_->index.find(name);
  if (it == state_->index.end()) SL_FAIL(state_->path, ": no tensor named \"", name, "\"");
  return state_->tensors[it->second];
}

std::string_view SafetensorsFile::bytes(std::string_view name) const {
  const SafetensorsTensorInfo& t = info(name);
  return std::string_view(state_->data + t.begin, t.end - t.begin);
}

Tensor SafetensorsFile::get(std::string_view name) const {
  const SafetensorsTensorInfo& t = info(name);
  Tensor out = Tensor::empty(t.shape, t.dtype);
  const int64_t n = static_cast<int64_t>(t.end - t.begin);
  char* dst = static_cast<char*>(out.raw_data());
  const char* src = state_->data + t.begin;
  // Large tensors: copy in parallel chunks, so page faults on the mapping overlap.
  constexpr int64_t kChunk = int64_t{16} << 20;
#pragma omp parallel for schedule(static) if (n > 4 * kChunk)
  for (int64_t c = 0; c < n; c += kChunk) std::memcpy(dst + c, src + c, static_cast<size_t>(std::min(kChunk, n - c)));
  return out;
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return state_->metadata; }

// ---- writing ----

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Entry {
    const std::string* name;
    const Tensor* tensor;
    const FileDType* fd;
  };
  std::vector<Entry> entries;
  std::unordered_set<std::string_view> seen;
  for (const auto& entry : tensors) {
    // Named references rather than structured bindings: clang before 16 cannot capture those.
    const std::string& name = entry.first;
    const Tensor& t = entry.second;
    auto bad = [&](const auto&... parts) { SL_FAIL("save_safetensors '", path, "': tensor \"", name, "\": ", parts...); };
    if (name.empty()) SL_FAIL("save_safetensors '", path, "': a tensor has an empty name");
    if (name == "__metadata__") bad("the name is reserved for the header's metadata");
    if (!seen.insert(name).second) bad("the name appears twice");
    if (!t.defined()) bad("the tensor is undefined");
    const FileDType* fd = file_dtype_for(t.dtype());
    if (!fd) bad("dtype ", dtype_name(t.dtype()), " cannot be stored in safetensors");
    entries.push_back({&name, &t, fd});
  }
  // The safetensors library's order: descending alignment, then name, so each tensor's data
  // starts aligned to its element size.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.fd->align_rank != b.fd->align_rank ? a.fd->align_rank > b.fd->align_rank : *a.name < *b.name;
  });

  json::Object header;
  if (!metadata.empty()) {
    json::Object meta;
    for (const auto& [k, v] : metadata) meta.insert(k, json::Value(v));
    header.insert("__metadata__", json::Value(std::move(meta)));
  }
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    json::Array shape;
    for (int64_t s : e.tensor->shape()) shape.emplace_back(s);
    const uint64_t nbytes = static_cast<uint64_t>(e.tensor->nbytes());
    json::Object entry;
    entry.insert("dtype", json::Value(e.fd->name));
    entry.insert("shape", json::Value(std::move(shape)));
    entry.insert("data_offsets", json::Value(json::Array{json::Value(offset), json::Value(offset + nbytes)}));
    header.insert(*e.name, json::Value(std::move(entry)));
    offset += nbytes;
  }
  std::string text = json::dump(json::Value(std::move(header)));
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile f(path);
  const uint64_t n = text.size();
  f.write(&n, 8);  // little-endian host
  f.write(text);
  for (const Entry& e : entries) {
    // One tensor at a time, so peak memory stays small; device tensors come through the host.
    Tensor c = e.tensor->device().is_cpu() ? ops::contiguous(*e.tensor) : e.tensor->to(Device::cpu());
    if (c.nbytes() > 0) f.write(c.raw_data(), static_cast<size_t>(c.nbytes()));
  }
  f.commit();
}

// ---- sharded checkpoints ----

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  SafetensorsCheckpoint ck;
  ck.path_ = path;
  const bool is_index = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    ck.shards_.push_back(SafetensorsFile::open(path));
    for (const std::string& name : ck.shards_[0].names()) ck.where_.emplace(name, 0);
    return ck;
  }
  json::Value index = json::parse_file(path);
  json::Ref root(index, path);
  if (std::optional<json::Ref> meta = root.get("metadata"); meta && !meta->is_null()) {
    meta->as_object();  // type check with a message naming the key
    ck.index_metadata_ = meta->value();
  }
  json::Ref weight_map = root["weight_map"];
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::map<std::string, size_t> shard_ids;  // shard file name -> position in shards_
  for (const json::Member& m : weight_map.as_object()) {
    const std::string& file = weight_map[m.key].as_string();
    auto [it, fresh] = shard_ids.emplace(file, ck.shards_.size());
    if (fresh) ck.shards_.push_back(SafetensorsFile::open(dir + file));
    if (!ck.shards_[it->second].contains(m.key))
      SL_FAIL(path, ": weight_map puts tensor \"", m.key, "\" in \"", file, "\", but that file has no such tensor");
    ck.where_.emplace(m.key, it->second);
  }
  return ck;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

bool SafetensorsCheckpoint::contains(std::string_view name) const { return where_.find(name) != where_.end(); }

const SafetensorsFile& SafetensorsCheckpoint::shard_of(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) SL_FAIL(path_, ": no tensor named \"", name, "\" in the checkpoint");
  return shards_[it->second];
}

const SafetensorsTensorInfo& SafetensorsCheckpoint::info(std::string_view name) const { return shard_of(name).info(name); }
Tensor SafetensorsCheckpoint::get(std::string_view name) const { return shard_of(name).get(name); }
const std::string& SafetensorsCheckpoint::shard_path(std::string_view name) const { return shard_of(name).path(); }

}  // namespace shardlab

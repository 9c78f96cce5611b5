// safetensors tests: a file built byte by byte from the spec, the writer's exact bytes, round trips
// for every dtype, non-contiguous inputs, every corruption the reader must name, atomic writes and
// sharded checkpoints.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/atomic_file.h"
#include "core/ops/views.h"
#include "core/safetensors.h"

namespace shardlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shardlab_st_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  static void write_raw(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  // A safetensors file from a header string (padded to 8 with spaces, as writers do) and a data buffer.
  std::string make_file(const std::string& name, std::string header, const std::string& data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string bytes = u64le(header.size()) + header + data;
    std::string path = file(name);
    write_raw(path, bytes);
    return path;
  }

  static std::string u64le(uint64_t n) {
    std::string s;
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
    return s;
  }

  std::vector<std::string> leftovers() const {  // temp files an atomic write left behind
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
    return out;
  }

  std::string dir_;
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

TEST_F(Safetensors, ReadsAFileBuiltByHandFromTheSpec) {
  // f32 [2,2] = 1, 2, -0.5, 3      (0x3F800000, 0x40000000, 0xBF000000, 0x40400000, little-endian)
  // i64 [2]   = -1, 258            (0xFF..FF, 0x0102)
  // bf16 [3]  = 1, -2, 0.5         (0x3F80, 0xC000, 0x3F00)
  std::string data = bytes({0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0xBF, 0x00, 0x00, 0x40, 0x40});
  data += bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x01, 0, 0, 0, 0, 0, 0});
  data += bytes({0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F});
  // Header keys deliberately not in offset order: readers must sort by offsets, not trust order.
  std::string header = R"({"c":{"dtype":"BF16","shape":[3],"data_offsets":[32,38]},"__metadata__":{"format":"pt"},)"
                       R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"I64","shape":[2],"data_offsets":[16,32]}})";
  std::string path = make_file("golden.safetensors", header, data);

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  Tensor a = f.get("a");
  EXPECT_EQ(a.dtype(), DType::f32);
  EXPECT_EQ(a.shape(), (Shape{2, 2}));
  EXPECT_EQ(a.to_double_vector(), (std::vector<double>{1, 2, -0.5, 3}));
  Tensor b = f.get("b");
  EXPECT_EQ(b.dtype(), DType::i64);
  EXPECT_EQ(b.to_int_vector(), (std::vector<int64_t>{-1, 258}));
  Tensor c = f.get("c");
  EXPECT_EQ(c.dtype(), DType::bf16);
  EXPECT_EQ(c.to_double_vector(), (std::vector<double>{1, -2, 0.5}));
  EXPECT_EQ(f.info("c").file_dtype, "BF16");
  EXPECT_EQ(f.info("c").begin, 32u);
  EXPECT_EQ(f.bytes("b").size(), 16u);
  EXPECT_THAT(error_of([&] { f.get("d"); }), HasSubstr(path + ": no tensor named \"d\""));
}

TEST_F(Safetensors, WriterProducesTheSpecBytes) {
  // One f32 tensor "attn.0" of shape (1, 2, 3) holding 0..5. The header is compact JSON, 64 bytes
  // long (already a multiple of 8, so no padding), followed by the little-endian floats.
  save_safetensors(file("w.safetensors"), {{"attn.0", Tensor::from_vector({0, 1, 2, 3, 4, 5}, {1, 2, 3})}});
  std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(header.size(), 64u);
  std::string expected = bytes({64, 0, 0, 0, 0, 0, 0, 0}) + header +
                         bytes({0, 0, 0, 0, 0, 0, 0x80, 0x3F, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xA0, 0x40});
  EXPECT_EQ(read_file(file("w.safetensors")), expected);

  // No tensors: "{}" padded with six spaces.
  save_safetensors(file("empty.safetensors"), {});
  EXPECT_EQ(read_file(file("empty.safetensors")), bytes({8, 0, 0, 0, 0, 0, 0, 0}) + "{}      ");

  // Metadata first; tensors by descending alignment (I64, F32, BF16, U8), then by name; header
  // padded with spaces to a multiple of 8.
  save_safetensors(file("mixed.safetensors"),
                   {{"z", Tensor::from_vector({1}, {1}, DType::bf16)},
                    {"m", Tensor::from_ints({7}, {1}, DType::u8)},
                    {"b", Tensor::from_vector({1}, {1}, DType::f32)},
                    {"a", Tensor::from_vector({2}, {1}, DType::f32)},
                    {"y", Tensor::from_ints({3}, {1}, DType::i64)}},
                   {{"format", "pt"}});
  std::string mixed = R"({"__metadata__":{"format":"pt"},)"
                      R"("y":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},)"
                      R"("z":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},)"
                      R"("m":{"dtype":"U8","shape":[1],"data_offsets":[18,19]}})";
  mixed.append((8 - mixed.size() % 8) % 8, ' ');
  std::string got = read_file(file("mixed.safetensors"));
  EXPECT_EQ(got.substr(8, mixed.size()), mixed);
  EXPECT_EQ(got.substr(0, 8), u64le(mixed.size()));
  EXPECT_EQ(got.size(), 8 + mixed.size() + 19);
}

TEST_F(Safetensors, RoundTripsEveryDtype) {
  std::vector<std::pair<std::string, Tensor>> ts = {
      {"f32", Tensor::from_vector({1.5, -2.25, 3e-8, 1e30, 0, -0.0}, {2, 3}, DType::f32)},
      {"f64", Tensor::from_vector({0.1, -1e300, 1.0 / 3.0}, {3}, DType::f64)},
      {"bf16", Tensor::from_vector({1.5, -2, 0.0078125, 65280, 3}, {5, 1}, DType::bf16)},
      {"f16", Tensor::from_vector({1.5, -2, 0.0009765625, 65504, 7}, {1, 5}, DType::f16)},
      {"i32", Tensor::from_ints({INT32_MIN, -1, 0, INT32_MAX}, {2, 2}, DType::i32)},
      {"i64", Tensor::from_ints({INT64_MIN, -1, 9007199254740993, INT64_MAX}, {4}, DType::i64)},
      {"u8", Tensor::from_ints({0, 1, 127, 255}, {4}, DType::u8)},
      {"i8", Tensor::from_ints({-128, -1, 0, 127}, {2, 1, 2}, DType::i8)},
      {"scalar", Tensor::from_vector({42}, {}, DType::f32)},
      {"empty", Tensor::zeros({0, 3}, DType::f16)},
  };
  const std::string path = file("all.safetensors");
  save_safetensors(path, ts, {{"note", "round trip"}, {"format", "pt"}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names().size(), ts.size());
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("note"), "round trip");
  const uint64_t header_len = [&] {
    uint64_t n;
    std::memcpy(&n, read_file(path).data(), 8);
    return n;
  }();
  EXPECT_EQ(header_len % 8, 0u);
  for (const auto& [name, t] : ts) {
    SCOPED_TRACE(name);
    Tensor back = f.get(name);
    EXPECT_EQ(back.dtype(), t.dtype());
    EXPECT_EQ(back.shape(), t.shape());
    ASSERT_EQ(back.nbytes(), t.nbytes());
    if (t.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(back.raw_data(), t.raw_data(), static_cast<size_t>(t.nbytes())), 0);
    }
    // Every tensor starts aligned to its element size within the file.
    EXPECT_EQ((8 + header_len + f.info(name).begin) % static_cast<uint64_t>(dtype_size(t.dtype())), 0u);
  }
  EXPECT_EQ(f.get("i64").to_int_vector()[2], 9007199254740993);  // 2^53 + 1 survives exactly
  EXPECT_EQ(f.get("bf16").to_double_vector(), (std::vector<double>{1.5, -2, 0.0078125, 65280, 3}));
  EXPECT_EQ(f.get("scalar").item(), 42.0);
}

TEST_F(Safetensors, SavesNonContiguousTensors) {
  Tensor base = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4}, DType::f64);
  Tensor t = ops::transpose(base, 0, 1);             // (4, 3), strides (1, 4)
  Tensor s = ops::slice(base, 1, 0, 4, 2);           // (3, 2): columns 0 and 2
  Tensor e = ops::expand(Tensor::from_vector({5, 6}, {1, 2}), {3, 2});  // stride 0 rows
  ASSERT_FALSE(t.is_contiguous());
  ASSERT_FALSE(s.is_contiguous());
  save_safetensors(file("nc.safetensors"), {{"t", t}, {"s", s}, {"e", e}});
  SafetensorsFile f = SafetensorsFile::open(file("nc.safetensors"));
  EXPECT_EQ(f.get("t").shape(), (Shape{4, 3}));
  EXPECT_EQ(f.get("t").to_double_vector(), (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(f.get("s").to_double_vector(), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(f.get("e").to_double_vector(), (std::vector<double>{5, 6, 5, 6, 5, 6}));
}

TEST_F(Safetensors, BoolLoadsAsU8) {
  std::string path = make_file("bool.safetensors", R"({"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})",
                               bytes({1, 0, 1}));
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.get("mask").dtype(), DType::u8);
  EXPECT_EQ(f.get("mask").to_int_vector(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(f.info("mask").file_dtype, "BOOL");
}

TEST_F(Safetensors, CorruptFilesNameTheFileAndTensor) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');
  struct Case {
    const char* label;
    std::string header;
    std::string data;
    std::string expected;  // substring after "<path>: "
  };
  std::vector<Case> cases = {
      {"truncated", "{" + ok_entry + "}", std::string(4, '\0'),
       "file is truncated: tensor \"w\" ends at byte 8 of the data buffer but only 4 bytes follow the header"},
      {"trailing", "{" + ok_entry + "}", std::string(12, '\0'),
       "the data buffer holds 12 bytes but the tensors cover only 8"},
      {"unknown dtype", R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": unknown dtype \"F33\""},
      {"unsupported dtype", R"({"w":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": dtype U16 is not supported by shardlab"},
      {"size mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": shape (3,) of F32 needs 12 bytes but data_offsets [0, 8] span 8"},
      {"begin > end", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight,
       "tensor \"w\": data_offsets [8, 0] are out of order (begin > end)"},
      {"overlap",
       R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       eight, "tensor \"v\" (data_offsets [4, 8]) overlaps tensor \"w\" (data_offsets [0, 8])"},
      {"gap", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight,
       "data bytes [0, 4) belong to no tensor (gap before tensor \"w\")"},
      {"bad shape", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": \"shape\" must be an array of non-negative integers, got [-2]"},
      {"bad offsets", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight,
       "tensor \"w\": \"data_offsets\" must be [begin, end] with non-negative integers"},
      {"missing dtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", eight, "tensor \"w\": \"dtype\" must be a string"},
      {"extra key", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":1}})", eight,
       "tensor \"w\": unexpected key \"offsets\" in the header entry"},
      {"entry not object", R"({"w":[1]})", "", "tensor \"w\": header entry must be an object, got array"},
      {"not an object", "[1]", "", "header must be a JSON object, got array"},
      {"metadata value", R"({"__metadata__":{"step":3}})", "", "\"__metadata__\" value for \"step\" must be a string, got number"},
      {"shape overflow", R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight,
       "tensor \"w\": shape [4294967296,4294967296] overflows"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    std::string path = make_file("bad.safetensors", c.header, c.data);
    EXPECT_THAT(error_of([&] { SafetensorsFile::open(path); }), HasSubstr(path + ": " + c.expected));
  }
}

TEST_F(Safetensors, MalformedHeadersNameTheFile) {
  // Duplicate tensor names and broken JSON fail in the parser, with the header's line:column.
  std::string dup = make_file("dup.safetensors",
                              R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                              bytes({1, 2}));
  EXPECT_EQ(error_of([&] { SafetensorsFile::open(dup); }), dup + " header:1:54: duplicate key \"w\"");
  std::string broken = make_file("broken.safetensors", R"({"w":{"dtype":"U8",)", "");
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(broken); }), HasSubstr(broken + " header:1:"));

  // Header length larger than the file.
  std::string big = file("big.safetensors");
  write_raw(big, u64le(1000) + "{}      ");
  EXPECT_EQ(error_of([&] { SafetensorsFile::open(big); }), big + ": header length 1000 is larger than the file (16 bytes)");
  write_raw(big, u64le(uint64_t{1} << 60) + "{}      ");
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(big); }), HasSubstr(big + ": header length 1152921504606846976 exceeds"));
  // Shorter than the 8-byte length field.
  std::string tiny = file("tiny.safetensors");
  write_raw(tiny, "abc");
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(tiny); }), HasSubstr(tiny + ": file is too small for safetensors (3 bytes"));
  EXPECT_THAT(error_of([&] { SafetensorsFile::open(file("missing.safetensors")); }),
              HasSubstr("cannot open '" + file("missing.safetensors") + "': No such file or directory"));
}

TEST_F(Safetensors, SaveRejectsBadInputsAndLeavesTheOldFile) {
  const std::string path = file("model.safetensors");
  save_safetensors(path, {{"w", Tensor::ones({2})}});
  const std::string before = read_file(path);
  Tensor w = Tensor::ones({2});
  EXPECT_EQ(error_of([&] { save_safetensors(path, {{"a", w}, {"a", w}}); }),
            "save_safetensors '" + path + "': tensor \"a\": the name appears twice");
  EXPECT_EQ(error_of([&] { save_safetensors(path, {{"__metadata__", w}}); }),
            "save_safetensors '" + path + "': tensor \"__metadata__\": the name is reserved for the header's metadata");
  EXPECT_EQ(error_of([&] { save_safetensors(path, {{"", w}}); }), "save_safetensors '" + path + "': a tensor has an empty name");
  EXPECT_EQ(error_of([&] { save_safetensors(path, {{"q", Tensor::empty({64}, DType::nf4)}}); }),
            "save_safetensors '" + path + "': tensor \"q\": dtype nf4 cannot be stored in safetensors");
  EXPECT_EQ(error_of([&] { save_safetensors(path, {{"u", Tensor()}}); }),
            "save_safetensors '" + path + "': tensor \"u\": the tensor is undefined");
  EXPECT_EQ(read_file(path), before);
  EXPECT_TRUE(leftovers().empty());
  // A directory that does not exist: the error names the target.
  EXPECT_THAT(error_of([&] { save_safetensors(file("no/such/dir/m.safetensors"), {{"w", w}}); }),
              HasSubstr("cannot write '" + file("no/such/dir/m.safetensors") + "'"));
}

TEST_F(Safetensors, AtomicWriteNeverLeavesHalfAFile) {
  const std::string path = file("data.bin");
  write_file_atomic(path, "old contents");
  EXPECT_EQ(read_file(path), "old contents");
  // A writer abandoned half-way (an exception while streaming) leaves the old file and no temp.
  try {
    AtomicFile f(path);
    f.write("new, but only half");
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_EQ(f.temp_path(), path + ".tmp." + std::to_string(getpid()));
    throw Error("simulated failure while writing");
  } catch (const Error&) {
  }
  EXPECT_EQ(read_file(path), "old contents");
  EXPECT_TRUE(leftovers().empty());
  // A failing rename (the target is a non-empty directory) removes the temp file and names the path.
  const std::string blocked = file("blocked");
  fs::create_directory(blocked);
  write_file_atomic(blocked + "/keep", "x");
  EXPECT_THAT(error_of([&] { write_file_atomic(blocked, "data"); }),
              HasSubstr("cannot write '" + blocked + "': rename failed"));
  EXPECT_TRUE(leftovers().empty());
  EXPECT_EQ(read_file(blocked + "/keep"), "x");
  // Missing directory.
  EXPECT_THAT(error_of([&] { write_file_atomic(file("nope/x"), "data"); }),
              HasSubstr("cannot write '" + file("nope/x") + "': cannot create '" + file("nope/x") + ".tmp."));
  // Overwrite works and replaces the whole content.
  write_file_atomic(path, "new");
  EXPECT_EQ(read_file(path), "new");
  EXPECT_THAT(error_of([&] { read_file(file("absent.txt")); }),
              HasSubstr("cannot open '" + file("absent.txt") + "': No such file or directory"));
  EXPECT_THAT(error_of([&] { read_file(dir_); }), HasSubstr("cannot read '" + dir_ + "': Is a directory"));
}

TEST_F(Safetensors, ShardedCheckpointFindsEachTensor) {
  save_safetensors(file("model-00001-of-00002.safetensors"),
                   {{"embed.weight", Tensor::from_vector({1, 2}, {2})}, {"layers.0.w", Tensor::from_vector({3}, {1})}});
  save_safetensors(file("model-00002-of-00002.safetensors"), {{"lm_head.weight", Tensor::from_ints({4, 5}, {2}, DType::i32)}});
  write_file_atomic(file("model.safetensors.index.json"),
                    R"({"metadata":{"total_size":20},"weight_map":{"embed.weight":"model-00001-of-00002.safetensors",)"
                    R"("layers.0.w":"model-00001-of-00002.safetensors","lm_head.weight":"model-00002-of-00002.safetensors"}})");
  SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(file("model.safetensors.index.json"));
  EXPECT_EQ(ck.shards().size(), 2u);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"embed.weight", "layers.0.w", "lm_head.weight"}));
  EXPECT_EQ(ck.get("lm_head.weight").to_int_vector(), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(ck.get("embed.weight").to_double_vector(), (std::vector<double>{1, 2}));
  EXPECT_EQ(ck.shard_path("layers.0.w"), file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(ck.index_metadata().at("total_size").as_int(), 20);
  EXPECT_THAT(error_of([&] { ck.get("nope"); }), HasSubstr(": no tensor named \"nope\" in the checkpoint"));

  // A single file opens the same way.
  SafetensorsCheckpoint single = SafetensorsCheckpoint::open(file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(single.names(), (std::vector<std::string>{"lm_head.weight"}));

  // The index points a tensor at the wrong shard.
  write_file_atomic(file("bad.index.json"), R"({"weight_map":{"lm_head.weight":"model-00001-of-00002.safetensors"}})");
  EXPECT_EQ(error_of([&] { SafetensorsCheckpoint::open(file("bad.index.json")); }),
            file("bad.index.json") + ": weight_map puts tensor \"lm_head.weight\" in \"model-00001-of-00002.safetensors\", "
                                     "but that file has no such tensor");
  // A missing shard names the shard's path; a missing weight_map names the key.
  write_file_atomic(file("missing.index.json"), R"({"weight_map":{"x":"absent.safetensors"}})");
  EXPECT_THAT(error_of([&] { SafetensorsCheckpoint::open(file("missing.index.json")); }),
              HasSubstr("cannot open '" + file("absent.safetensors") + "'"));
  write_file_atomic(file("empty.index.json"), R"({"metadata":{}})");
  EXPECT_EQ(error_of([&] { SafetensorsCheckpoint::open(file("empty.index.json")); }),
            file("empty.index.json") + ": missing key \"weight_map\"");
}

}  // namespace
}  // namespace shardlab

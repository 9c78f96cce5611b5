// Hugging Face checkpoint I/O for Llama: config.json parsing (incl. llama3 rope scaling), save and
// load round trips in f32 and bf16, and every bad-input case naming its culprit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "models/llama_io.h"

namespace shardlab::models {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

LlamaConfig tiny() {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 20;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  return c;
}

class LlamaIo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("shardlab_llama_io_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }
  template <typename F>
  void expect_error(F&& f, std::vector<std::string> pieces) {
    try {
      f();
      FAIL() << "no error";
    } catch (const Error& e) {
      for (auto& p : pieces) EXPECT_THAT(e.what(), HasSubstr(p));
    }
  }
  fs::path dir_;
};

TEST_F(LlamaIo, ConfigParsesHuggingFaceFieldsAndLlama3Scaling) {
  json::Value v = json::parse(R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  LlamaConfig c = llama_config_from_json(v, "config.json");
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.resolved_head_dim(), 128);
  EXPECT_EQ(c.torch_dtype, DType::bf16);
  EXPECT_EQ(*c.eos_token_id, 128001);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  // Llama-3.1-8B has 8.03 B parameters.
  EXPECT_EQ(c.num_parameters(), 8030261248);
}

TEST_F(LlamaIo, ConfigErrorsNameTheFileAndKey) {
  expect_error([] { llama_config_from_json(json::parse(R"({"hidden_size": "big"})"), "cfg.json"); },
               {"cfg.json", "hidden_size"});
  expect_error([] { llama_config_from_json(json::parse(R"({"model_type": "mistral"})"), "cfg.json"); },
               {"cfg.json", "mistral"});
  expect_error(
      [] { llama_config_from_json(json::parse(R"({"rope_scaling": {"rope_type": "yarn", "factor": 4}})"), "c.json"); },
      {"c.json", "rope_scaling", "yarn"});
  expect_error([] { llama_config_from_json(json::parse(R"({"num_attention_heads": 6, "num_key_value_heads": 4,
      "hidden_size": 12})"), "c.json"); }, {"c.json", "num_key_value_heads"});
}

TEST_F(LlamaIo, SaveThenLoadRoundTripsExactly) {
  LlamaForCausalLM a(tiny(), 11);
  save_llama(a, dir());
  auto b = load_llama(dir(), 99);
  auto pa = a.named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_EQ(pa[i].second.to_double_vector(), pb[i].second.to_double_vector()) << pa[i].first;
  }
  // Files are the only things in the directory: nothing temporary is left behind.
  int files = 0;
  for (auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST_F(LlamaIo, ShardedSaveWritesAnIndexAndLoadsBack) {
  LlamaForCausalLM a(tiny(), 15);
  save_llama(a, dir(), DType::f32, /*max_shard_bytes=*/8000);
  ASSERT_TRUE(fs::exists(dir_ / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors"));
  json::Value index = json::parse_file((dir_ / "model.safetensors.index.json").string());
  int64_t total = 0;
  for (auto& [n, p] : a.named_parameters()) total += p.nbytes();
  EXPECT_EQ(index.at("metadata").at("total_size").as_int(), total);
  std::set<std::string> files;
  for (const json::Member& m : index.at("weight_map").as_object()) files.insert(m.value.as_string());
  EXPECT_GT(files.size(), 2u);
  for (const std::string& f : files) {
    EXPECT_TRUE(fs::exists(dir_ / f)) << f;
    EXPECT_LE(static_cast<int64_t>(fs::file_size(dir_ / f)), 8000 + 4096) << f;  // one tensor may overshoot alone
  }
  auto b = load_llama(dir(), 0);
  auto pa = a.named_parameters(), pb = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.to_double_vector(), pb[i].second.to_double_vector()) << pa[i].first;
}

TEST_F(LlamaIo, Bf16CheckpointsLoadIntoF32Models) {
  LlamaForCausalLM a(tiny(), 12);
  save_llama(a, dir(), DType::bf16);
  SafetensorsFile f = SafetensorsFile::open((dir_ / "model.safetensors").string());
  EXPECT_EQ(f.info("lm_head.weight").file_dtype, "BF16");
  auto b = load_llama(dir(), 0);
  EXPECT_EQ(b->config().torch_dtype, DType::bf16);
  std::vector<double> wa = a.named_parameters()[0].second.to_double_vector();
  std::vector<double> wb = b->named_parameters()[0].second.to_double_vector();
  for (size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wa[i], wb[i], std::abs(wa[i]) * 4e-3);
}

TEST_F(LlamaIo, MissingDirectoryConfigOrWeightsAreNamed) {
  expect_error([&] { load_llama(dir()); }, {dir(), "does not exist"});
  fs::create_directories(dir_);
  expect_error([&] { load_llama(dir()); }, {"config.json"});
  write_file_atomic((dir_ / "config.json").string(), json::dump(llama_config_to_json(tiny())));
  expect_error([&] { load_llama(dir()); }, {"model.safetensors"});
}

TEST_F(LlamaIo, WrongShapeMissingAndUnexpectedTensorsAreNamed) {
  LlamaForCausalLM a(tiny(), 13);
  save_llama(a, dir());
  const std::string weights = (dir_ / "model.safetensors").string();
  auto rewrite = [&](const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
    std::vector<std::pair<std::string, Tensor>> t;
    for (auto& [n, p] : a.named_parameters()) t.emplace_back(n, p);
    edit(t);
    save_safetensors(weights, t);
  };
  rewrite([](auto& t) { t[1].second = Tensor::zeros({3, 3}); });
  expect_error([&] { load_llama(dir()); }, {"model.safetensors", a.named_parameters()[1].first, "(3, 3)"});
  rewrite([](auto& t) { t.pop_back(); });
  expect_error([&] { load_llama(dir()); }, {"missing tensor 'lm_head.weight'"});
  rewrite([](auto& t) { t.emplace_back("model.extra.weight", Tensor::zeros({1})); });
  expect_error([&] { load_llama(dir()); }, {"unexpected tensor 'model.extra.weight'"});
}

TEST_F(LlamaIo, TruncatedWeightsAreAnErrorNotGarbage) {
  LlamaForCausalLM a(tiny(), 14);
  save_llama(a, dir());
  const fs::path weights = dir_ / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) - 100);
  expect_error([&] { load_llama(dir()); }, {"model.safetensors"});
}

}  // namespace
}  // namespace shardlab::models

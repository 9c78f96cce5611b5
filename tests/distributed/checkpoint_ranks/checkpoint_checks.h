// Shared by the checkpoint tests on 2 and 4 ranks: a directory every rank agrees on, the Trainer in
// one plain process on the global batch of W ranks, and a model's parameters as f64.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <unistd.h>

#include "tests/trainer/data_parallel_fixtures.h"

namespace shardlab::train::testing {

namespace fs = std::filesystem;

// A fresh temporary directory named after rank 0's pid (collective over `group`).
inline fs::path shared_dir(dist::ProcessGroup& group, const std::string& tag) {
  Tensor t = Tensor::from_vector({group.rank() == 0 ? static_cast<double>(::getpid()) : 0.0}, {1}, DType::f64);
  group.all_reduce(t)->wait();
  const fs::path dir =
      fs::temp_directory_path() / ("shardlab_ckpt_" + std::to_string(static_cast<int64_t>(t.item())) + "_" + tag);
  if (group.rank() == 0) fs::remove_all(dir);
  group.barrier()->wait();
  return dir;
}

inline std::vector<std::vector<double>> parameters_of(const models::LlamaForCausalLM& m) {
  std::vector<std::vector<double>> out;
  for (const Tensor& t : m.parameters()) out.push_back(t.to_double_vector());
  return out;
}

// The tiny Llama trained by one process, no engine, on the global batch of `world` ranks with one
// sequence each (RankStream(world, 0, 1) yields what RankStream(1, r, world) yields over all r).
struct SingleProcessTrainer {
  SingleProcessTrainer(int world, TrainerOptions options, bool lora = false)
      : model(tiny(), 21), data(world, 0, 1) {
    if (lora) add_lora(model);
    optimizer = std::make_unique<nn::AdamW>(model.trainable_parameters(), 0.0);
    trainer = std::make_unique<Trainer>(model, *optimizer, data, std::move(options));
  }
  models::LlamaForCausalLM model;
  RankStream data;
  std::unique_ptr<nn::AdamW> optimizer;
  std::unique_ptr<Trainer> trainer;
};

inline TrainerOptions sharded_options(int64_t steps, const fs::path& dir = {}) {
  TrainerOptions o = dp_options(steps);
  o.state_dict_type = StateDictType::sharded;
  o.output_dir = dir.string();
  return o;
}

// The message of the shardlab::Error `fn` throws ("" when it does not throw).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace shardlab::train::testing

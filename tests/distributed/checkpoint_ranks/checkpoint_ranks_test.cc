// Checkpoints on 2 and 4 ranks (run under mpirun by ctest): sharded save and exact resume, loading
// a sharded checkpoint into another world size and preset and into one process, a crash before
// the rename leaving the previous checkpoint whole, the FULL_STATE_DICT export gathered one bucket
// at a time (memory ledger), `convert` reproducing the model exactly with clear errors for damaged
// checkpoints, and LoRA adapters saved under ZeRO loading into one process with the same logits.
#include <gtest/gtest.h>

#include <fstream>

#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "distributed/checkpoint_convert.h"
#include "distributed/checkpoint_export.h"
#include "distributed/sharded_checkpoint.h"
#include "models/llama_io.h"
#include "models/peft_adapter.h"
#include "nn/optimizer_8bit.h"
#include "tests/distributed/checkpoint_ranks/checkpoint_checks.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"
#include "tests/support/emulated_cuda.h"

namespace shardlab::train::testing {
namespace {

using dist::Preset;
using dist::testing::world;

void check_sharded_resume(Preset preset, DType dtype, const Variant& variant = {}) {
  dist::ProcessGroup& g = world();
  const fs::path dir = shared_dir(g, std::string("resume_") + dist::preset_name(preset) + dtype_name(dtype));
  TrainerOptions o = sharded_options(4, dir);
  o.save_steps = 2;
  DataParallelTrainer straight(g, preset, dtype, o, variant);
  straight.trainer->run();
  const fs::path ckpt = dir / "checkpoint-2";
  const std::vector<std::string> files = {"index.json", "trainer_state.json", "config.json",
                                          dist::shard_file_name(g.rank()), "data-rank-" + std::to_string(g.rank()) + ".json"};
  for (const std::string& f : files)
    EXPECT_TRUE(fs::exists(ckpt / f)) << f;
  EXPECT_FALSE(fs::exists(ckpt / "model.safetensors"));  // no rank gathers the model
  DataParallelTrainer resumed(g, preset, dtype, dp_options(4), variant);
  resumed.trainer->load_checkpoint(ckpt.string());
  EXPECT_EQ(resumed.trainer->global_step(), 2);
  const double loss3 = resumed.trainer->step().loss, loss4 = resumed.trainer->step().loss;
  EXPECT_EQ(loss3, straight.trainer->history()[2].loss);
  EXPECT_EQ(loss4, straight.trainer->history()[3].loss);
  EXPECT_EQ(resumed.parameters(), straight.parameters()) << dist::preset_name(preset) << " " << dtype_name(dtype);
  g.barrier()->wait();
  if (g.rank() == 0) fs::remove_all(dir);
}

TEST(CheckpointRanks, ShardedResumeIsBitExact) {
  check_sharded_resume(Preset::zero2, DType::f32);
  check_sharded_resume(Preset::zero1, DType::bf16);  // fp32 master shards are the stored values
  check_sharded_resume(Preset::ddp, DType::f32);
  check_sharded_resume(Preset::zero2, DType::f32, {.lora = true});  // only the adapters are sharded
  check_sharded_resume(Preset::zero3, DType::f32);
  check_sharded_resume(Preset::zero3, DType::bf16);
  check_sharded_resume(Preset::hybrid_shard, DType::f32);  // one shard group writes, its replicas skip
  // On a device (emulated CUDA) with the parameters offloaded: shards read from and loaded into host
  // shards, the gathered units on the device.
  shardlab::testing::use_emulated_cuda();
  check_sharded_resume(Preset::zero3, DType::bf16, {.device = Device::cuda(0), .offload_param = true});
  check_sharded_resume(Preset::hybrid_shard, DType::f32, {.device = Device::cuda(0)});
  shardlab::testing::remove_emulated_cuda();
}

// Half the ranks train ZeRO-2 and save; all ranks load it as ZeRO-1, and one process loads it twice:
// once continuing the half-world run, once on the whole world's batch. Loaded parameters equal the
// saved ones exactly; the next step matches within the trainer parity tolerance (data_parallel_fixtures.h).
void check_reshard(Preset saved_with, Preset loaded_with) {
  dist::ProcessGroup& g = world();
  const int half = std::max(1, g.size() / 2);
  std::vector<int> first;
  for (int r = 0; r < half; ++r) first.push_back(r);
  std::shared_ptr<dist::ProcessGroup> sub = g.new_group(first, "first_half");
  const fs::path dir = shared_dir(g, std::string("reshard_") + dist::preset_name(saved_with));
  const fs::path ckpt = dir / "checkpoint-2";
  std::vector<std::vector<double>> saved, half_after3;
  double half_loss3 = 0;
  if (sub) {
    DataParallelTrainer h(*sub, saved_with, DType::f32, sharded_options(3, dir));
    h.trainer->step();
    h.trainer->step();
    h.trainer->save_checkpoint();
    saved = h.parameters();
    half_loss3 = h.trainer->step().loss;
    half_after3 = h.parameters();
  }
  g.barrier()->wait();
  DataParallelTrainer all(g, loaded_with, DType::f32, dp_options(3));
  all.trainer->load_checkpoint(ckpt.string());
  EXPECT_EQ(all.trainer->global_step(), 2);
  const auto loaded = all.parameters();
  const double all_loss3 = all.trainer->step().loss;
  const auto all_after3 = all.parameters();
  if (g.rank() == 0) {
    EXPECT_EQ(loaded, saved);
    SingleProcessTrainer one_half(half, dp_options(3));
    one_half.trainer->load_checkpoint(ckpt.string());
    EXPECT_EQ(parameters_of(one_half.model), saved);
    EXPECT_NEAR(one_half.trainer->step().loss, half_loss3, 1e-5);
    EXPECT_LE(max_abs_difference(parameters_of(one_half.model), half_after3), 2e-5);
    SingleProcessTrainer one_all(g.size(), dp_options(3));
    one_all.trainer->load_checkpoint(ckpt.string());
    const double loss = one_all.trainer->step().loss;
    EXPECT_NEAR(all_loss3, loss, 1e-5);
    const double diff = max_abs_difference(parameters_of(one_all.model), all_after3);
    EXPECT_LE(diff, 2e-5);
    std::printf("reshard: %d-rank %s -> %d-rank %s -> 1 process: step-3 loss %.7f vs %.7f, max |param diff| %.3g\n",
                half, dist::preset_name(saved_with), g.size(), dist::preset_name(loaded_with), all_loss3, loss, diff);
  }
  g.barrier()->wait();
  if (g.rank() == 0) fs::remove_all(dir);
}

TEST(CheckpointRanks, ReshardsAcrossWorldSizesAndPresetsAndIntoOneProcess) {
  check_reshard(Preset::zero2, Preset::zero1);
  check_reshard(Preset::zero3, Preset::hybrid_shard);
  check_reshard(Preset::ddp, Preset::zero3);
}

// The other direction: one plain process (fp32 masters of a bf16 model) saves, every rank loads
// it under ZeRO-2 and ZeRO-3 and holds exactly its parameters.
TEST(CheckpointRanks, OneProcessCheckpointLoadsOnEveryRank) {
  dist::ProcessGroup& g = world();
  const fs::path dir = shared_dir(g, "from_one");
  std::vector<std::vector<double>> saved;
  if (g.rank() == 0) {
    models::LlamaForCausalLM model(tiny(), 21);
    model.to(DType::bf16);
    nn::MasterWeights masters(model.trainable_parameters());
    nn::AdamW optimizer(masters.masters(), 0.0);
    RankStream data(g.size(), 0, 1);
    Trainer one(model, optimizer, data, sharded_options(3, dir), {}, MixedPrecision{&masters, nullptr});
    one.step();
    one.step();
    one.save_checkpoint();
    saved = parameters_of(model);
  }
  g.barrier()->wait();
  for (Preset preset : {Preset::zero2, Preset::zero3}) {
    DataParallelTrainer dp(g, preset, DType::bf16, dp_options(3));
    dp.trainer->load_checkpoint((dir / "checkpoint-2").string());
    EXPECT_EQ(dp.trainer->global_step(), 2);
    const auto loaded = dp.parameters();
    if (g.rank() == 0) EXPECT_EQ(loaded, saved) << dist::preset_name(preset);
  }
  g.barrier()->wait();
  if (g.rank() == 0) fs::remove_all(dir);
}

// A crash after every file is written but before the rename leaves checkpoint-4 absent and
// checkpoint-2 whole: resuming from it reproduces the crashed run's steps 3 and 4 exactly.
TEST(CheckpointRanks, CrashBeforeRenameKeepsThePreviousCheckpoint) {
  dist::ProcessGroup& g = world();
  for (StateDictType type : {StateDictType::sharded, StateDictType::full}) {
    const fs::path dir = shared_dir(g, type == StateDictType::sharded ? "crash_sharded" : "crash_full");
    TrainerOptions o = sharded_options(4, dir);
    o.state_dict_type = type;
    o.save_steps = 2;
    o.before_checkpoint_rename = [](const std::string& tmp) {
      if (tmp.find("checkpoint-4") != std::string::npos) SL_FAIL("simulated crash before renaming ", tmp);
    };
    DataParallelTrainer crashed(g, Preset::zero2, DType::f32, o);
    EXPECT_NE(error_of([&] { crashed.trainer->run(); }).find("simulated crash"), std::string::npos);
    g.barrier()->wait();
    EXPECT_FALSE(fs::exists(dir / "checkpoint-4"));
    EXPECT_TRUE(fs::exists(dir / "checkpoint-2" / "trainer_state.json"));
    DataParallelTrainer resumed(g, Preset::zero2, DType::f32, dp_options(4));
    resumed.trainer->load_checkpoint((dir / "checkpoint-2").string());
    resumed.trainer->step();
    resumed.trainer->step();
    EXPECT_EQ(resumed.parameters(), crashed.parameters());
    g.barrier()->wait();
    if (g.rank() == 0) fs::remove_all(dir);
  }
}

// FULL_STATE_DICT: rank 0 receives every trained parameter exactly; beyond that output no rank
// ever holds more than one bucket's full parameters (measured by the memory ledger).
TEST(CheckpointRanks, FullExportGathersOneBucketAtATime) {
  dist::ProcessGroup& g = world();
  for (Preset preset : {Preset::ddp, Preset::zero1, Preset::zero2, Preset::zero3, Preset::hybrid_shard}) {
    const fs::path dir = shared_dir(g, std::string("full_") + dist::preset_name(preset));
    TrainerOptions o = dp_options(2);
    o.output_dir = dir.string();
    DataParallelTrainer dp(g, preset, DType::f32, o);
    dp.trainer->run();  // saves checkpoint-2 as FULL_STATE_DICT
    const dist::DataParallelEngine& engine = *dp.setup.engine;
    int64_t largest_bucket = 0;
    for (const dist::BucketLayout& b : engine.buckets()) largest_bucket = std::max(largest_bucket, b.padded_numel);
    MemoryLedger& ledger = MemoryLedger::instance();
    ledger.reset_peaks();
    const DeviceMemory before = ledger.snapshot(Device::cpu());
    nn::NamedTensors full = dist::gather_full_parameters(engine, dp.model.named_parameters(), DType::f32);
    const DeviceMemory after = ledger.snapshot(Device::cpu());
    const int64_t output = g.rank() == 0 ? engine.trained_numel() * 4 : 0;
    const int64_t unit = preset == Preset::ddp ? 0 : largest_bucket * 4;
    EXPECT_EQ(after[MemTag::other].peak - before[MemTag::other].live, output);
    EXPECT_LE(after[MemTag::communication].peak - before[MemTag::communication].live, unit);
    EXPECT_LE(after.peak - before.live, output + unit) << dist::preset_name(preset) << " rank " << g.rank();
    const auto expected = dp.parameters();  // collective (ZeRO-3 gathers)
    if (g.rank() == 0) {
      nn::NamedTensors model = dp.model.named_parameters();
      ASSERT_EQ(full.size(), model.size());
      for (size_t i = 0; i < full.size(); ++i) {
        EXPECT_EQ(full[i].first, model[i].first);
        EXPECT_EQ(full[i].second.to_double_vector(), expected[i]) << full[i].first;
      }
      auto written = models::load_llama((dir / "checkpoint-2").string());
      EXPECT_EQ(parameters_of(*written), expected);
      std::printf("full export %s, %d ranks: peak beyond the %ld-byte output %ld bytes (largest bucket %ld bytes)\n",
                  dist::preset_name(preset), g.size(), static_cast<long>(output),
                  static_cast<long>(after.peak - before.live - output), static_cast<long>(largest_bucket * 4));
    } else {
      EXPECT_TRUE(full.empty());
    }
    g.barrier()->wait();
    if (g.rank() == 0) fs::remove_all(dir);
  }
}

// `convert` (as `shardlab convert` runs it) gives exactly the in-memory model; a damaged checkpoint
// fails naming the missing file, the truncated file, or the tensor and range left uncovered.
TEST(CheckpointRanks, ConvertRoundTripAndDamagedCheckpoints) {
  dist::ProcessGroup& g = world();
  const fs::path dir = shared_dir(g, "convert");
  DataParallelTrainer dp(g, Preset::zero3, DType::f32, sharded_options(2, dir));
  dp.trainer->step();
  dp.trainer->step();
  const fs::path ckpt = dp.trainer->save_checkpoint();
  const auto expected = dp.parameters();
  if (g.rank() == 0) {
    const fs::path out = dir / "hf";
    EXPECT_EQ(dist::convert_sharded_to_safetensors(ckpt.string(), out.string(), DType::f32),
              static_cast<int64_t>(dp.model.named_parameters().size()));
    auto converted = models::load_llama(out.string());
    EXPECT_EQ(parameters_of(*converted), expected);

    auto damaged = [&](const std::string& name) {
      const fs::path copy = dir / name;
      fs::copy(ckpt, copy, fs::copy_options::recursive);
      return copy;
    };
    const fs::path missing = damaged("missing");
    fs::remove(missing / dist::shard_file_name(g.size() - 1));
    const std::string missing_error = error_of([&] { dist::ShardedCheckpoint::open(missing.string()); });
    EXPECT_NE(missing_error.find(dist::shard_file_name(g.size() - 1)), std::string::npos) << missing_error;
    EXPECT_NE(missing_error.find("is missing"), std::string::npos) << missing_error;

    const fs::path truncated = damaged("truncated");
    const fs::path shard0 = truncated / dist::shard_file_name(0);
    fs::resize_file(shard0, fs::file_size(shard0) - 16);
    const std::string truncated_error = error_of([&] {
      dist::convert_sharded_to_safetensors(truncated.string(), (dir / "never").string(), DType::f32);
    });
    EXPECT_NE(truncated_error.find(dist::shard_file_name(0)), std::string::npos) << truncated_error;
    EXPECT_FALSE(fs::exists(dir / "never" / "model.safetensors"));

    const fs::path gap = damaged("gap");
    json::Value index = json::parse_file((gap / "index.json").string());
    json::Object& params = index.as_object().find("parameters")->as_object();
    const std::string victim = params[0].key;
    json::Array& pieces = params.find(victim)->as_object().find("pieces")->as_array();
    const int64_t end = pieces.front().at("end").as_int();
    pieces.erase(pieces.begin());
    std::ofstream((gap / "index.json").string()) << json::dump(index);
    const std::string gap_error = error_of([&] { dist::ShardedCheckpoint::open(gap.string()); });
    EXPECT_NE(gap_error.find("'" + victim + "'"), std::string::npos) << gap_error;
    EXPECT_NE(gap_error.find("no piece for elements [0, " + std::to_string(end) + ")"), std::string::npos) << gap_error;
  }
  g.barrier()->wait();
  if (g.rank() == 0) fs::remove_all(dir);
}

// LoRA under ZeRO-2 and ZeRO-3: the checkpoint's PEFT adapter (FULL and SHARDED checkpoints both
// hold one), loaded by one plain process onto the base model, gives the sharded run's logits.
void check_lora_adapter(Preset preset, StateDictType type) {
  dist::ProcessGroup& g = world();
  const fs::path dir = shared_dir(g, std::string("lora_") + dist::preset_name(preset) +
                                         (type == StateDictType::sharded ? "_sharded" : "_full"));
  nn::LoraSettings settings;
  settings.r = 4;
  settings.alpha = 8;
  settings.target_linear = true;
  settings.seed = 3;  // as add_lora
  models::LlamaForCausalLM* trained = nullptr;
  TrainerOptions o = dp_options(2);
  o.output_dir = dir.string();
  o.state_dict_type = type;
  o.save_weights = [&](const std::string& d) { models::save_peft_adapter(*trained, settings, d); };
  DataParallelTrainer dp(g, preset, DType::f32, o, {.lora = true});
  trained = &dp.model;
  dp.trainer->run();
  models::LlamaInputs in{Tensor::from_ints({1, 5, 7, 2, 9, 3}, {1, 6})};
  std::vector<double> expected;
  {
    NoGradGuard no_grad;
    expected = dp.model.logits(in).to_double_vector();  // collective under ZeRO-3 (units gathered)
  }
  if (g.rank() == 0) {
    models::LlamaForCausalLM single(tiny(), 21);
    models::load_peft_adapter(single, (dir / "checkpoint-2").string());
    NoGradGuard no_grad;
    EXPECT_EQ(single.logits(in).to_double_vector(), expected);
    // The adapter moved: a base model without it gives other logits.
    models::LlamaForCausalLM base(tiny(), 21);
    EXPECT_NE(base.logits(in).to_double_vector(), expected);
    if (type == StateDictType::sharded) {  // the shards hold adapters, not a model, so convert refuses
      const std::string error = error_of([&] {
        dist::convert_sharded_to_safetensors((dir / "checkpoint-2").string(), (dir / "hf").string(), DType::f32);
      });
      EXPECT_NE(error.find("complete PEFT adapter"), std::string::npos) << error;
    }
  }
  g.barrier()->wait();
  if (g.rank() == 0) fs::remove_all(dir);
}

TEST(CheckpointRanks, LoraAdapterFromShardedRunLoadsInOneProcess) {
  for (StateDictType type : {StateDictType::full, StateDictType::sharded}) {
    check_lora_adapter(Preset::zero2, type);
    check_lora_adapter(Preset::zero3, type);  // the adapters are gathered around rank 0's save
  }
}

// 8-bit AdamW's block-quantized state cannot be cut at arbitrary elements: saving sharded is an
// error naming it, and no checkpoint appears.
TEST(CheckpointRanks, EightBitOptimizerStateIsRefusedClearly) {
  dist::ProcessGroup& g = world();
  const fs::path dir = shared_dir(g, "adamw8bit");
  if (g.rank() == 0) {
    models::LlamaForCausalLM model(tiny(), 21);
    nn::AdamW8bit optimizer(model.trainable_parameters(), 0.0);
    RankStream data(1, 0, 1);
    Trainer trainer(model, optimizer, data, sharded_options(1, dir));
    trainer.step();
    const std::string error = error_of([&] { trainer.save_checkpoint(); });
    EXPECT_NE(error.find("8-bit AdamW"), std::string::npos) << error;
    EXPECT_NE(error.find("exp_avg"), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(dir / "checkpoint-1"));
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace shardlab::train::testing

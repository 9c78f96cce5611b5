// shardlab train CONFIG.yaml: resolve the config, build tokenizer, model and data, train with
// progress lines and checkpoints, then save the model (HF format), draw the loss curve, print the
// memory ledger and, if asked, a generated sample. Everything is validated before anything is
// written to output_dir. Under mpirun every rank trains its slice of each global batch through the
// data-parallel engine (DDP, ZeRO-1/2 from the DeepSpeed stage); rank 0 alone prints and writes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/memory_ledger.h"
#include "core/trace.h"
#include "distributed/comm_ledger.h"
#include "distributed/data_parallel_setup.h"
#include "distributed/init.h"
#include "distributed/tracing.h"
#include "models/byte_tokenizer.h"
#include "models/data_loader.h"
#include "models/generate.h"
#include "models/llama_io.h"
#include "models/peft_adapter.h"
#include "models/tokenizer.h"
#include "nn/precision_policy.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/data_parallel_options.h"
#include "tools/cli/loss_plot.h"
#include "tools/cli/run_setup.h"
#include "tools/cli/runtime_caps.h"
#include "distributed/device_process_group.h"
#include "tools/cli/train_adapter.h"
#include "tools/config/deepspeed_config.h"
#include "tools/config/train_config.h"
#include "tools/trainer/trainer.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

namespace {

dist::CommBackend comm_backend(config::DdpBackend backend) {
  switch (backend) {
    case config::DdpBackend::automatic: return dist::CommBackend::automatic;
    case config::DdpBackend::nccl: return dist::CommBackend::nccl;
    case config::DdpBackend::mpi: return dist::CommBackend::mpi;
  }
  return dist::CommBackend::automatic;
}

// Every rank's memory ledger (CPU; peak and, in parentheses, live MiB per tag), gathered into one
// table for rank 0. Collective: every rank calls it.
std::string per_rank_memory_table(dist::ProcessGroup& group) {
  const DeviceMemory m = MemoryLedger::instance().snapshot(Device::cpu());
  std::vector<int64_t> mine;
  for (const TagBytes& t : m.tags) mine.insert(mine.end(), {t.peak, t.live});
  mine.insert(mine.end(), {m.peak, m.live});
  const auto n = static_cast<int64_t>(mine.size());
  Tensor all = Tensor::zeros({n * group.size()}, DType::i64);
  group.all_gather(all, Tensor::from_ints(mine, {n}))->wait();
  const std::vector<int64_t> v = all.to_int_vector();
  const auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::string out = "tag             ";
  char cell[64];
  for (int r = 0; r < group.size(); ++r) {
    std::snprintf(cell, sizeof(cell), "  %20s", ("rank " + std::to_string(r)).c_str());
    out += cell;
  }
  out += "\n";
  for (int64_t row = 0; row <= kNumMemTags; ++row) {
    bool used = row == kNumMemTags;
    for (int r = 0; r < group.size(); ++r) used |= v[r * n + 2 * row] != 0;
    if (!used) continue;
    std::snprintf(cell, sizeof(cell), "%-16s", row == kNumMemTags ? "total" : mem_tag_name(static_cast<MemTag>(row)));
    out += cell;
    for (int r = 0; r < group.size(); ++r) {
      std::snprintf(cell, sizeof(cell), "  %9.3f (%8.3f)", mib(v[r * n + 2 * row]), mib(v[r * n + 2 * row + 1]));
      out += cell;
    }
    out += "\n";
  }
  return out;
}

}  // namespace

int run_train(const std::vector<std::string>& argv) {
  Args args("train", {}, argv);
  SL_CHECK(args.positional().size() == 1, "shardlab train: expected one CONFIG.yaml, got ", args.positional().size(),
           " arguments");
  const std::string config_path = args.positional()[0];
  const config::TrainConfig cfg = config::resolve_auto(config::load_train_config(config_path), detect_runtime_caps());
  const Device device = training_device(cfg);
  apply_device_settings(cfg);
  const fs::path out_dir(cfg.output_dir);
  if (cfg.resume_from_checkpoint.empty() && fs::exists(out_dir) && !fs::is_empty(out_dir))
    SL_FAIL(config_path, ": output_dir '", cfg.output_dir,
            "' already has files; choose a new output_dir or set resume_from_checkpoint (nothing was changed)");
  // The ranks of this run: the MPI world under mpirun (or any MPI launcher), else one process.
  // Every rank builds the same model and data; rank 0 alone prints and writes output_dir.
  dist::InitOptions init;
  init.timeout = std::chrono::seconds(cfg.distributed.ddp_timeout_seconds);
  const std::shared_ptr<dist::ProcessGroup> world = dist::init_process_group(init);
  const bool rank0 = world->rank() == 0;

  // Tokenizer, model and data: all of it is built (and every error raised) before any write.
  auto tokenizer = make_tokenizer(cfg);
  // 16-bit training: parameters and compute in bf16/f16, fp32 masters in the optimizer, and for
  // f16 the dynamic loss scaler (DeepSpeed's defaults). The loss is computed in f32 either way.
  const nn::PrecisionPolicy precision = precision_from(cfg);
  // In the parameter dtype; with load_in_4bit (QLoRA) the decoder projections are 4-bit NF4.
  // fsdp_config.cpu_ram_efficient_loading: only rank 0 reads the weights file; the other ranks
  // build the architecture and get rank 0's weights from the engine's initial broadcast (the
  // startup checks require every weight to be trained, i.e. broadcast, and sync_module_states).
  const bool skip_weights = cfg.fsdp.cpu_ram_efficient_loading && world->rank() != 0 && !cfg.base_model.empty() &&
                            cfg.adapter.kind == config::AdapterKind::none;
  std::unique_ptr<models::LlamaForCausalLM> model =
      skip_weights ? std::make_unique<models::LlamaForCausalLM>(models::load_llama_config(cfg.base_model),
                                                                static_cast<uint64_t>(cfg.seed))
                   : build_model(cfg, precision, tokenizer->vocab_size(), config_path);
  if (skip_weights && precision.uses_master_weights()) model->to(precision.param_dtype);
  // Recompute each decoder layer in backward instead of keeping its activations.
  model->set_gradient_checkpointing(cfg.gradient_checkpointing);
  // LoRA: adapters on the frozen base; only they reach the optimizer (and the fp32 masters).
  const std::optional<AdapterSetup> adapter = apply_adapter(cfg, *model);
  const models::LlamaConfig& mc = model->config();
  SL_CHECK(tokenizer->vocab_size() <= mc.vocab_size, config_path, ": the tokenizer has ", tokenizer->vocab_size(),
           " tokens but the model's vocab_size is ", mc.vocab_size);
  SL_CHECK(cfg.sequence_len <= mc.max_position_embeddings, config_path, ": sequence_len ", cfg.sequence_len,
           " exceeds the model's max_position_embeddings ", mc.max_position_embeddings);
  // train_batch_size against the world size, "auto" bucket sizes, ZeRO-3/offload (deepspeed_config.h).
  const config::DistributedSettings ds = config::check_distributed_runtime(cfg, {world->size(), mc.hidden_size});
  // The engine runs whenever there is more than one rank or a ZeRO stage or FSDP is asked for; one
  // process without either keeps the plain path.
  const bool data_parallel = world->size() > 1 || ds.zero_stage > 0 || cfg.fsdp.enabled;
  // The model moves before the optimizer (and fp32 masters) are built, so their state is made there.
  if (!device.is_cpu()) model->to(device);

  TrainingData data = load_training_data(cfg, *tokenizer, config_path);
  models::TrainValSplit& split = data.split;
  models::LoaderOptions lo = loader_options(cfg, *tokenizer, world->rank(), world->size());
  // NOTE [global batch layout] (data_loader.h): rank r takes rows [r*B, (r+1)*B) of each global
  // micro batch of world_size*B rows, so the ranks together see one process's batch of that size.
  models::DataLoader train_loader(std::move(split.train), lo);
  const int64_t batches_per_epoch = train_loader.batches_in_epoch(0);
  SL_CHECK(batches_per_epoch >= cfg.gradient_accumulation_steps, config_path, ": one epoch has ", batches_per_epoch,
           " micro batches, fewer than gradient_accumulation_steps (", cfg.gradient_accumulation_steps, ")");
  const int64_t steps_per_epoch = batches_per_epoch / cfg.gradient_accumulation_steps;
  const int64_t total_steps = cfg.max_steps > 0 ? cfg.max_steps : cfg.num_epochs * steps_per_epoch;
  std::vector<train::MicroBatch> val_batches;
  if (!split.val.empty()) {
    models::LoaderOptions vo = lo;
    vo.shuffle = false;
    vo.drop_last = false;
    vo.rank = 0;  // every rank evaluates the whole validation set (same parameters, same result)
    vo.world_size = 1;
    models::DataLoader val_loader(std::move(split.val), vo);
    for (int64_t i = 0; i < val_loader.batches_in_epoch(0); ++i)
      val_batches.push_back(LoaderStream::to_micro(val_loader.batch(0, i)));
  }

  // The resolved configuration and what it implies.
  if (rank0) {
    std::printf("%s", config::resolved_config_yaml(cfg, config_path).c_str());
    const int64_t global_rows = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world->size();
    std::printf("# model: %ld parameters (%ld layers, hidden %ld, heads %ld/%ld, vocab %ld)\n",
                static_cast<long>(model->num_parameters()), static_cast<long>(mc.num_hidden_layers),
                static_cast<long>(mc.hidden_size), static_cast<long>(mc.num_attention_heads),
                static_cast<long>(mc.num_key_value_heads), static_cast<long>(mc.vocab_size));
    std::printf("# data: %ld records -> %ld train / %zu val samples (%ld truncated, %ld dropped)\n",
                static_cast<long>(data.stats.records), static_cast<long>(train_loader.num_samples()), val_batches.size(),
                static_cast<long>(data.stats.truncated),
                static_cast<long>(data.stats.dropped_prompt_too_long + data.stats.dropped_no_targets));
    if (adapter) std::printf("# %s\n", describe(cfg, *adapter, *model).c_str());
    std::printf("# precision: %s\n", precision.describe().c_str());
    std::printf("# global batch: %ld sequences (rows) = %ld tokens (micro_batch_size %ld x gradient_accumulation_steps "
                "%ld x world size %d); %ld steps (%ld per epoch)\n",
                static_cast<long>(global_rows), static_cast<long>(global_rows * cfg.sequence_len),
                static_cast<long>(cfg.micro_batch_size), static_cast<long>(cfg.gradient_accumulation_steps),
                world->size(), static_cast<long>(total_steps), static_cast<long>(steps_per_epoch));
    std::fflush(stdout);
  }

  const nn::LossScalerConfig sc = loss_scaler_config(cfg);
  const dist::OptimizerFactory make_optimizer = optimizer_factory(cfg);
  std::unique_ptr<nn::MasterWeights> masters;
  std::unique_ptr<nn::DynamicLossScaler> scaler;
  std::unique_ptr<nn::Optimizer> optimizer;
  std::shared_ptr<dist::ProcessGroup> engine_group;  // declared first: it outlives the engine in dp
  dist::DataParallelSetup dp;
  if (data_parallel) {
    // The engine broadcasts rank 0's parameters, keeps the (sharded) fp32 masters and the optimizer
    // steps its shards. DeepSpeed's or FSDP's knobs when the config gives them, else the engine's.
    const dist::DataParallelOptions o = data_parallel_options(cfg, ds, world->size());
    // GPU tensors: NCCL when every rank has its own GPU, else host copies around the MPI
    // collectives (ddp_backend chooses; distributed/device_process_group.h).
    dist::DeviceGroup device_group = dist::device_process_group(world, device, comm_backend(cfg.distributed.ddp_backend));
    engine_group = device_group.group;
    if (rank0 && !device.is_cpu()) std::printf("# collectives: %s\n", device_group.reason.c_str());
    dp = dist::make_data_parallel(*model, *engine_group, o, precision, make_optimizer, sc);
    optimizer = std::move(dp.optimizer);
    scaler = std::move(dp.scaler);
    if (rank0)
      std::printf("# data parallel: world size %d (%s), %s, collective timeout %ld s\n", world->size(),
                  engine_group->backend_name().c_str(), describe(o, world->size()).c_str(),
                  static_cast<long>(world->timeout().count() / 1000));
  } else {
    std::vector<Tensor> stepped = model->trainable_parameters();
    if (precision.uses_master_weights()) {
      masters = std::make_unique<nn::MasterWeights>(stepped);
      stepped = masters->masters();
      if (precision.loss_scaling) scaler = std::make_unique<nn::DynamicLossScaler>(sc);
    }
    optimizer = make_optimizer(std::move(stepped));
  }
  train::TrainerOptions to;
  to.device = device;
  to.max_steps = total_steps;
  to.gradient_accumulation_steps = cfg.gradient_accumulation_steps;
  to.max_grad_norm = cfg.max_grad_norm;
  const int64_t warmup = cfg.warmup_steps > 0 ? cfg.warmup_steps
                                              : static_cast<int64_t>(std::ceil(cfg.warmup_ratio * total_steps));
  const nn::LrScheduleKind kinds[] = {nn::LrScheduleKind::constant, nn::LrScheduleKind::linear, nn::LrScheduleKind::cosine};
  to.schedule = {kinds[static_cast<int>(cfg.lr_scheduler)], cfg.learning_rate, warmup, total_steps};
  to.logging_steps = cfg.logging_steps;
  to.eval_steps = val_batches.empty() ? 0 : cfg.eval_steps;
  to.save_steps = cfg.save_steps > 0 ? cfg.save_steps
                  : cfg.saves_per_epoch > 0 ? std::max<int64_t>(1, steps_per_epoch / cfg.saves_per_epoch) : 0;
  to.output_dir = cfg.output_dir;
  // fsdp_config.state_dict_type: checkpoints as one gathered HF model, or one shard per rank.
  to.state_dict_type = cfg.fsdp.state_dict_type == config::FsdpStateDictType::sharded ? train::StateDictType::sharded
                                                                                      : train::StateDictType::full;
  if (adapter) {
    // Checkpoints of an adapter run hold the adapter (PEFT files), not a copy of the frozen base.
    to.save_weights = [&](const std::string& dir) { models::save_peft_adapter(*model, adapter->settings, dir, cfg.base_model); };
    to.load_weights = [&](const std::string& dir) { models::load_peft_adapter_weights(*model, dir); };
  }
  LoaderStream stream(train_loader);
  std::function<double()> eval_fn;
  if (!val_batches.empty()) eval_fn = [&] { return train::evaluate(*model, val_batches); };
  train::Trainer trainer(*model, *optimizer, stream, to, eval_fn, {masters.get(), scaler.get()}, dp.engine.get());
  if (!cfg.resume_from_checkpoint.empty()) {
    trainer.load_checkpoint(cfg.resume_from_checkpoint);
    if (rank0)
      std::printf("# resumed from %s at step %ld\n", cfg.resume_from_checkpoint.c_str(),
                  static_cast<long>(trainer.global_step()));
  }
  if (cfg.trace) trace::start();
  trainer.run();
  if (cfg.trace) dist::write_merged_trace(*world, (out_dir / "trace.json").string());
  // Collective: every rank contributes its ledger before rank 0 prints.
  const std::string memory_table = per_rank_memory_table(*world);
  // zero3 / hybrid_shard: every rank gathers the whole model (collective) so that rank 0 can save
  // it and sample from it; the other presets hold it whole already.
  if (dp.engine) dp.engine->gather_full_parameters();
  if (!rank0) return 0;

  // The final model, loadable by `shardlab eval/generate` and by Hugging Face; for an adapter run
  // the PEFT adapter (`shardlab merge` folds it into the base).
  if (adapter) models::save_peft_adapter(*model, adapter->settings, cfg.output_dir, cfg.base_model);
  else models::save_llama(*model, cfg.output_dir, mc.torch_dtype);
  if (auto* bytes = dynamic_cast<models::ByteTokenizer*>(tokenizer.get())) bytes->save(cfg.output_dir);
  else if (!cfg.base_model.empty())
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      if (fs::exists(fs::path(cfg.base_model) / f))
        fs::copy_file(fs::path(cfg.base_model) / f, out_dir / f, fs::copy_options::overwrite_existing);

  std::vector<double> losses;
  for (const train::StepStats& s : trainer.history()) losses.push_back(s.loss);
  std::printf("\nloss curve (training loss per step):\n%s", ascii_plot(losses).c_str());
  std::printf("\nmemory ledger per rank (peak MiB, live at the end in parentheses):\n%s", memory_table.c_str());
  std::printf("\ncommunication ledger (rank 0, world size %d):\n%s", world->size(), world->ledger().table().c_str());
  std::printf("\n%s saved to %s\n", adapter ? "adapter" : "model", cfg.output_dir.c_str());
  if (cfg.generate_after_training) {
    models::GenerateOptions g;
    g.max_new_tokens = cfg.generate_after_training->max_new_tokens;
    g.eos_id = tokenizer->eos_id();
    const std::string& prompt = cfg.generate_after_training->prompt;
    std::vector<int64_t> out = models::generate(*model, tokenizer->encode(prompt, tokenizer->add_bos_by_default()), g);
    std::printf("\nsample: %s%s\n", prompt.c_str(), tokenizer->decode(out, true).c_str());
  }
  return 0;
}

}  // namespace shardlab::cli

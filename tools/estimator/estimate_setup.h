// What the memory estimator and the step-time model are asked about: a Llama shape, a training
// recipe (precision, optimizer, adapter, checkpointing, batch) and a sharding preset over N ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "distributed/sharding_plan.h"
#include "models/llama_config.h"

namespace shardlab::estimate {

// f32: everything in f32. bf16/fp16_masters: 16-bit parameters, activations and gradients, fp32
// master weights (counted with the optimizer state, as ZeRO does) and fp32 master gradients.
enum class Precision { f32, bf16_masters, fp16_masters };
enum class OptimizerKind { adamw, adamw_8bit, sgd };
// none: every parameter trained; lora: low-rank adapters on a frozen base; qlora: the same on an
// NF4 base (decoder projections in 4 bits, the rest in the compute dtype).
enum class AdapterKind { none, lora, qlora };

const char* precision_name(Precision p);   // "f32", "bf16+masters", "fp16+masters"
const char* optimizer_name(OptimizerKind o);
const char* adapter_name(AdapterKind a);   // "full", "lora", "qlora"

struct EstimateSetup {
  models::LlamaConfig model;
  Precision precision = Precision::f32;
  OptimizerKind optimizer = OptimizerKind::adamw;
  AdapterKind adapter = AdapterKind::none;
  int64_t lora_r = 8;
  // PEFT suffixes (q_proj, ..., down_proj); empty: every decoder projection (target_linear).
  std::vector<std::string> lora_targets;
  bool gradient_checkpointing = false;
  int64_t micro_batch_size = 1;
  int64_t sequence_len = 2048;
  dist::Preset preset = dist::Preset::ddp;
  int world_size = 1;
  int hybrid_group_size = 0;        // fsdp_hybrid_shard: ranks per shard group; 0: the whole world
  bool offload_optimizer = false;   // optimizer state (and fp32 masters) on the CPU
  bool offload_params = false;      // sharded parameters and gradients on the CPU (zero3/hybrid only), fetched
                                    // per unit; implies offload_optimizer, as in the engine
  int64_t bucket_elements = 0;      // reduce / all-gather bucket; 0: hidden_size^2 (bench's default)
  int prefetch_depth = 1;           // zero3/hybrid: units gathered ahead of the one in use

  int64_t resolved_bucket_elements() const { return bucket_elements > 0 ? bucket_elements : model.hidden_size * model.hidden_size; }
  // The ranks a parameter/gradient/optimizer shard is spread over (hybrid: the group).
  int shard_group_size() const;
};

// Bytes per element of activations, parameters and activation gradients in the compute dtype.
double compute_bytes(Precision p);

}  // namespace shardlab::estimate

// The adapter keys of a train config: LoRA's rank, alpha, dropout and targets, the adapter to
// continue from, and QLoRA's 4-bit settings, each checked where it is written.
#include "tools/config/adapter_config.h"

#include <set>

namespace shardlab::config::detail {

namespace {

// The field of `key`, or null when it is absent or empty ('', []): "not set".
const Field* given(const Section& s, const char* key) {
  const Field* f = s.find(key);
  if (f == nullptr) return nullptr;
  if (f->value.IsScalar() && f->value.Scalar().empty()) return nullptr;
  if ((f->value.IsSequence() || f->value.IsMap()) && f->value.size() == 0) return nullptr;
  return f;
}

std::vector<std::string> module_names(const Reader& rd, const Field& f) {
  if (!f.value.IsSequence())
    rd.fail_at(f.value, f.path + " must be a list of module names (e.g. [q_proj, v_proj]), got " + describe(f.value));
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const YAML::Node item = f.value[i];
    if (!item.IsScalar() || item.Scalar().empty())
      rd.fail_at(item, f.path + "[" + std::to_string(i) + "] must be a module name, got " + describe(item));
    if (!seen.insert(item.Scalar()).second) rd.fail_at(item, f.path + " names '" + item.Scalar() + "' twice");
    out.push_back(item.Scalar());
  }
  return out;
}

}  // namespace

AdapterConfig parse_adapter(const Reader& rd, const Section& top) {
  AdapterConfig a;
  const Field* adapter = given(top, "adapter");
  if (adapter)
    a.kind = rd.choice<AdapterKind>(*adapter, {{"lora", AdapterKind::lora}, {"qlora", AdapterKind::qlora}},
                                    {"ia3", "llama-adapter", "prefix_tuning", "lora_plus"});
  if (const Field* f = given(top, "lora_r")) a.lora_r = rd.integer(*f, 1);
  if (const Field* f = given(top, "lora_alpha")) {
    a.lora_alpha = rd.number(*f);
    if (a.lora_alpha <= 0) rd.fail_at(f->value, "lora_alpha must be > 0, got '" + f->value.Scalar() + "'");
  }
  if (const Field* f = given(top, "lora_dropout")) {
    a.lora_dropout = rd.number(*f);
    if (a.lora_dropout < 0 || a.lora_dropout >= 1)
      rd.fail_at(f->value, "lora_dropout must be in [0, 1), got '" + f->value.Scalar() + "'");
  }
  if (const Field* f = given(top, "lora_target_modules")) a.lora_target_modules = module_names(rd, *f);
  if (const Field* f = given(top, "lora_target_linear")) a.lora_target_linear = rd.boolean(*f);
  if (const Field* f = given(top, "lora_model_dir")) a.lora_model_dir = rd.string(*f);

  const Field* four_bit = given(top, "load_in_4bit");
  if (four_bit) a.load_in_4bit = rd.boolean(*four_bit);
  if (const Field* f = given(top, "bnb_4bit_quant_type"))
    rd.choice<int>(*f, {{"nf4", 0}}, {"fp4"});  // the only 4-bit format there is
  if (const Field* f = given(top, "bnb_4bit_use_double_quant"); f && !rd.boolean(*f))
    rd.fail_at(f->value, "bnb_4bit_use_double_quant must be true: the absmax scales are always quantized "
                         "again (QLoRA's double quantization); false is not supported");
  if (const Field* f = given(top, "bnb_4bit_compute_dtype"))
    a.bnb_4bit_compute_dtype = rd.choice<ComputeDType>(
        *f, {{"auto", ComputeDType::automatic}, {"float32", ComputeDType::float32}, {"bfloat16", ComputeDType::bfloat16},
             {"float16", ComputeDType::float16}, {"fp32", ComputeDType::float32}, {"bf16", ComputeDType::bfloat16},
             {"fp16", ComputeDType::float16}});

  // Across keys: each error points at the key that cannot stand as written.
  if (a.kind == AdapterKind::none) {
    for (const char* key : {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_model_dir"})
      if (const Field* f = given(top, key))
        rd.fail_at(f->key, std::string(key) + " needs an adapter: set adapter: lora (or qlora)");
    if (a.lora_target_linear)
      rd.fail_at(given(top, "lora_target_linear")->key, "lora_target_linear needs an adapter: set adapter: lora (or qlora)");
  } else if (a.lora_target_modules.empty() && !a.lora_target_linear && a.lora_model_dir.empty()) {
    rd.fail_at(adapter->value, "adapter " + std::string(to_string(a.kind)) +
                                   " needs targets: lora_target_modules (e.g. [q_proj, v_proj]) or "
                                   "lora_target_linear: true (or an adapter to continue in lora_model_dir)");
  }
  if (a.kind == AdapterKind::qlora && !a.load_in_4bit)
    rd.fail_at(adapter->value, "adapter qlora needs load_in_4bit: true (QLoRA trains on a 4-bit NF4 base)");
  if (a.load_in_4bit && a.kind != AdapterKind::qlora)
    rd.fail_at(four_bit->key, "load_in_4bit: true needs adapter: qlora (a 4-bit base can only be trained through "
                              "LoRA adapters)");
  if (!a.load_in_4bit)
    for (const char* key : {"bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype"})
      if (const Field* f = given(top, key)) rd.fail_at(f->key, std::string(key) + " needs load_in_4bit: true");
  return a;
}

}  // namespace shardlab::config::detail

// The op registry generated from ops.def: names, whether differentiable, and the owning family.
#pragma once

#include <span>
#include <string_view>

namespace shardlab {

enum class OpId {
#define SL_OP(name, diff, family) name,
#include "core/ops.def"
#undef SL_OP
};

struct OpInfo {
  std::string_view name;
  bool differentiable;
  std::string_view family;
};

std::span<const OpInfo> all_ops();
const OpInfo& op_info(OpId id);

}  // namespace shardlab

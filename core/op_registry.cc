// The op table, expanded from ops.def.
#include "core/op_registry.h"

namespace shardlab {

namespace {
constexpr OpInfo kOps[] = {
#define SL_OP(name, diff, family) {#name, diff, #family},
#include "core/ops.def"
#undef SL_OP
};
}  // namespace

std::span<const OpInfo> all_ops() { return kOps; }
const OpInfo& op_info(OpId id) { return kOps[static_cast<int>(id)]; }

}  // namespace shardlab

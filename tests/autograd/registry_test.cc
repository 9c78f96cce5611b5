// Every differentiable op in core/ops.def must have at least one GRADCHECK_TEST.
#include <gtest/gtest.h>

#include "core/op_registry.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {

std::set<std::string>& gradchecked_ops() {
  static std::set<std::string> ops;
  return ops;
}

TEST(OpRegistry, EveryDifferentiableOpHasAGradcheck) {
  std::string missing;
  int differentiable = 0;
  for (const OpInfo& op : all_ops()) {
    if (!op.differentiable) continue;
    ++differentiable;
    if (!gradchecked_ops().contains(std::string(op.name))) missing += " " + std::string(op.name);
  }
  EXPECT_GT(differentiable, 40);
  EXPECT_TRUE(missing.empty()) << "differentiable ops without a gradcheck:" << missing;
}

TEST(OpRegistry, GradchecksNameOnlyKnownOps) {
  for (const std::string& name : gradchecked_ops()) {
    bool known = false;
    for (const OpInfo& op : all_ops()) known |= op.name == name;
    EXPECT_TRUE(known) << "GRADCHECK_TEST names '" << name << "', which is not in core/ops.def";
  }
}

}  // namespace shardlab::testing

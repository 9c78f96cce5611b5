// Learning-rate schedules as pure functions of the step, with the semantics of Hugging Face's
// get_{constant,linear,cosine}_schedule_with_warmup: linear warm-up from 0 over `warmup_steps`,
// then constant, linear decay to 0, or half-cosine decay to 0 at `total_steps`.
#pragma once

#include <cstdint>
#include <string_view>

namespace shardlab::nn {

enum class LrScheduleKind { constant, linear, cosine };
LrScheduleKind parse_lr_schedule(std::string_view name);  // "constant", "linear", "cosine"

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::constant;
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // The learning rate for optimizer step `step` (0-based: the first update uses lr_at(0)).
  double lr_at(int64_t step) const;
};

}  // namespace shardlab::nn

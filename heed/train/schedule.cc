// Learning-rate schedules.
#include "heed/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "heed/tensor/error.h"

namespace heed::train {

Schedule::Schedule(const ScheduleOptions& o) : options_(o) {
  HEED_CHECK(o.peak_lr >= 0, "schedule: peak_lr must be >= 0, got ", o.peak_lr);
  HEED_CHECK(o.warmup_steps >= 0, "schedule: warmup_steps must be >= 0, got ", o.warmup_steps);
  HEED_CHECK(o.warmup_init_lr >= 0, "schedule: warmup_init_lr must be >= 0, got ", o.warmup_init_lr);
  if (o.kind == ScheduleKind::kCosine)
    HEED_CHECK(o.total_steps > o.warmup_steps, "schedule: cosine needs total_steps > warmup_steps, got ",
               o.total_steps, " <= ", o.warmup_steps);
}

double Schedule::lr(int64_t step) const {
  const ScheduleOptions& o = options_;
  HEED_CHECK(step >= 1, "schedule: step numbers start at 1, got ", step);
  if (o.kind == ScheduleKind::kConstant) return o.peak_lr;
  const double s = static_cast<double>(step), w = static_cast<double>(o.warmup_steps);
  if (step <= o.warmup_steps) return o.warmup_init_lr + (o.peak_lr - o.warmup_init_lr) * s / w;
  if (o.kind == ScheduleKind::kInverseSqrt) return o.peak_lr * std::sqrt(std::max(w, 1.0) / s);
  if (step >= o.total_steps) return o.min_lr;
  const double progress = (s - w) / static_cast<double>(o.total_steps - o.warmup_steps);
  return o.min_lr + (o.peak_lr - o.min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
}

}  // namespace heed::train

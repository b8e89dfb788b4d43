// Learning-rate schedules: constant, linear warm-up + inverse-square-root decay (the
// Transformer's "Noam" shape), and linear warm-up + cosine decay.
#pragma once

#include <cstdint>

namespace heed::train {

enum class ScheduleKind { kConstant, kInverseSqrt, kCosine };

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::kInverseSqrt;
  double peak_lr = 1e-3;
  int64_t warmup_steps = 0;     // linear from warmup_init_lr to peak_lr over these steps
  double warmup_init_lr = 0.0;
  int64_t total_steps = 0;      // cosine: the step at which lr reaches min_lr
  double min_lr = 0.0;          // cosine floor
};

// lr(step) for update number step = 1, 2, ...:
//   warm-up (step <= W):  init + (peak - init) step / W
//   inverse sqrt (step > W):  peak sqrt(max(W, 1) / step)
//   cosine (W < step <= N):  min + (peak - min) (1 + cos(pi (step - W) / (N - W))) / 2; min after N
class Schedule {
 public:
  explicit Schedule(const ScheduleOptions& options);
  double lr(int64_t step) const;
  const ScheduleOptions& options() const { return options_; }

 private:
  ScheduleOptions options_;
};

}  // namespace heed::train

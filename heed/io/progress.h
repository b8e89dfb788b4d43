// A terminal progress bar for long loops (training epochs, evaluation, data loading):
// done/total, a bar, throughput, elapsed time, ETA and the caller's fields (loss=1.234).
// It writes only to the FILE* the caller hands it; library code never makes one itself.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace heed::io {

enum class ProgressStyle {
  kAuto,   // kBar when the FILE* is a terminal (isatty), kLines otherwise
  kBar,    // one line redrawn in place with \r, at most every bar_interval_s
  kLines,  // a plain line every line_interval_s (for logs and CI), and one at finish
  kQuiet,  // nothing
};

struct ProgressOptions {
  std::string label;         // shown first, e.g. "epoch 3"
  std::string unit = "it";   // throughput unit, e.g. "tok" gives "12.3k tok/s"
  ProgressStyle style = ProgressStyle::kAuto;
  double bar_interval_s = 0.1;    // kBar: redraw at most 10 times a second
  double line_interval_s = 10.0;  // kLines: a line at most this often; 0 for only at finish
  int bar_width = 24;             // characters inside [ ]
  std::function<double()> clock;  // seconds on a monotonic clock; empty: steady_clock
};

class ProgressBar {
 public:
  // `total` steps (0 when unknown: no bar, no ETA). `out` may be nullptr (quiet).
  ProgressBar(std::FILE* out, int64_t total, ProgressOptions options = {});
  ~ProgressBar();  // finishes the line if finish() was not called
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // `steps` more steps done, carrying `units` throughput units (e.g. tokens); units < 0
  // counts the steps themselves.
  void advance(int64_t steps = 1, double units = -1.0);
  // A field shown as name=value after the timings; setting a name again replaces it.
  void set(std::string_view name, double value, int significant_digits = 4);
  void set(std::string_view name, std::string_view value);
  // Draws the final state and ends the line; later calls do nothing.
  void finish();

  ProgressStyle style() const { return style_; }  // kAuto resolved
  int64_t done() const { return done_; }
  // The text of the line at time `now` (seconds on the options' clock), without \r or \n.
  std::string render(double now) const;

 private:
  double now() const;
  void draw(double now, bool final);

  std::FILE* out_;
  int64_t total_;
  ProgressOptions options_;
  ProgressStyle style_;
  double start_;
  double last_draw_;
  int64_t done_ = 0;
  double units_ = 0.0;
  bool finished_ = false;
  std::vector<std::pair<std::string, std::string>> fields_;
};

// "0:07", "12:34", "1:02:03".
std::string format_duration(double seconds);
// 950 -> "950", 12345 -> "12.3k", 4.5e6 -> "4.50M".
std::string format_si(double value);

}  // namespace heed::io

// ProgressBar: rate-limited drawing, in place on a terminal and as plain lines elsewhere.
#include "heed/io/progress.h"

#include <unistd.h>

#include <chrono>
#include <cmath>

namespace heed::io {
namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string printf_string(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[48];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

std::string format_si(double v) {
  if (!std::isfinite(v)) return "?";
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int k = 0;
  while (std::fabs(v) >= 999.5 && k < 4) {
    v /= 1000.0;
    ++k;
  }
  if (k == 0) return printf_string(std::fabs(v) >= 100 || v == std::floor(v) ? "%.0f" : "%.3g", v);
  return printf_string(std::fabs(v) >= 100 ? "%.0f" : std::fabs(v) >= 10 ? "%.1f" : "%.2f", v) + suffix[k];
}

ProgressBar::ProgressBar(std::FILE* out, int64_t total, ProgressOptions options)
    : out_(out), total_(total < 0 ? 0 : total), options_(std::move(options)) {
  style_ = options_.style;
  if (out_ == nullptr) style_ = ProgressStyle::kQuiet;
  if (style_ == ProgressStyle::kAuto) style_ = isatty(fileno(out_)) ? ProgressStyle::kBar : ProgressStyle::kLines;
  start_ = now();
  last_draw_ = start_;
}

ProgressBar::~ProgressBar() { finish(); }

double ProgressBar::now() const { return options_.clock ? options_.clock() : steady_seconds(); }

void ProgressBar::advance(int64_t steps, double units) {
  done_ += steps;
  units_ += units < 0 ? static_cast<double>(steps) : units;
  if (style_ == ProgressStyle::kQuiet || finished_) return;
  const double t = now();
  const double interval = style_ == ProgressStyle::kBar ? options_.bar_interval_s : options_.line_interval_s;
  if (style_ == ProgressStyle::kLines && interval <= 0) return;
  if (t - last_draw_ >= interval) draw(t, false);
}

void ProgressBar::set(std::string_view name, double value, int significant_digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", significant_digits, value);
  set(name, std::string_view(buf));
}

void ProgressBar::set(std::string_view name, std::string_view value) {
  for (auto& [n, v] : fields_) {
    if (n == name) {
      v = value;
      return;
    }
  }
  fields_.emplace_back(name, value);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (style_ != ProgressStyle::kQuiet) draw(now(), true);
}

std::string ProgressBar::render(double now) const {
  const double elapsed = std::max(0.0, now - start_);
  std::string line;
  if (!options_.label.empty()) line += options_.label + "  ";
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    line += std::to_string(done_) + "/" + std::to_string(total_) + " [";
    const int width = std::max(1, options_.bar_width);
    const int filled = static_cast<int>(frac * width);
    line.append(static_cast<size_t>(filled), '#');
    line.append(static_cast<size_t>(width - filled), '.');
    line += "] " + printf_string("%.1f", 100.0 * frac) + "%";
  } else {
    line += std::to_string(done_);
  }
  const double rate = elapsed > 0 ? units_ / elapsed : 0.0;
  line += "  " + (elapsed > 0 ? format_si(rate) : std::string("?")) + " " + options_.unit + "/s";
  line += "  " + format_duration(elapsed);
  if (total_ > 0) {
    const double eta = done_ > 0 ? elapsed * static_cast<double>(total_ - std::min(done_, total_)) /
                                       static_cast<double>(done_)
                                 : -1.0;
    line += "<" + format_duration(eta);
  }
  for (const auto& [name, value] : fields_) line += "  " + name + "=" + value;
  return line;
}

void ProgressBar::draw(double t, bool final) {
  last_draw_ = t;
  const std::string line = render(t);
  if (style_ == ProgressStyle::kBar) {
    // \r returns to the line start, ESC[K clears what a longer previous line left.
    std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

}  // namespace heed::io

// Tests for the progress bar: the line's fields, rate limiting, styles, formatting.
#include "heed/io/progress.h"

#include <gtest/gtest.h>

#include <string>

namespace heed::io {
namespace {

// Everything written to `f` so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

int count(const std::string& s, char c) { return static_cast<int>(std::count(s.begin(), s.end(), c)); }

TEST(ProgressBar, FormatsDurationsAndRates) {
  EXPECT_EQ(format_duration(7.2), "0:07");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_si(950), "950");
  EXPECT_EQ(format_si(12.5), "12.5");
  EXPECT_EQ(format_si(12345), "12.3k");
  EXPECT_EQ(format_si(4.5e6), "4.50M");
  EXPECT_EQ(format_si(999.7), "1.00k");
}

TEST(ProgressBar, LineShowsCountBarRateTimesAndFields) {
  double t = 100.0;
  ProgressBar bar(nullptr, 100, ProgressOptions{.label = "epoch 1", .unit = "tok", .clock = [&] { return t; }});
  for (int i = 0; i < 25; ++i) bar.advance(1, 10.0);
  bar.set("loss", 1.23456);
  bar.set("lr", "3e-4");
  bar.set("loss", 1.2);  // replaces, keeps its place
  EXPECT_EQ(bar.render(110.0), "epoch 1  25/100 [######..................] 25.0%  25 tok/s  0:10<0:30  loss=1.2  lr=3e-4");
  ProgressBar open_ended(nullptr, 0, ProgressOptions{.clock = [&] { return t; }});
  open_ended.advance(7);
  EXPECT_EQ(open_ended.render(102.0), "7  3.5 it/s  0:02");
}

TEST(ProgressBar, PlainLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double t = 0.0;
  {
    ProgressBar bar(f, 30, ProgressOptions{.line_interval_s = 10.0, .clock = [&] { return t; }});
    EXPECT_EQ(bar.style(), ProgressStyle::kLines);
    for (int i = 0; i < 30; ++i) {
      t += 1.0;
      bar.advance();
    }
    bar.finish();
    bar.finish();  // a second finish prints nothing
  }
  const std::string out = contents(f);
  EXPECT_EQ(count(out, '\n'), 4) << out;  // at t = 10, 20, 30 and the final line
  EXPECT_EQ(count(out, '\r'), 0) << out;
  EXPECT_NE(out.find("30/30 [########################] 100.0%"), std::string::npos) << out;
  std::fclose(f);
}

TEST(ProgressBar, BarRedrawsAtMostTenTimesASecond) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double t = 0.0;
  {
    ProgressBar bar(f, 1000, ProgressOptions{.style = ProgressStyle::kBar, .clock = [&] { return t; }});
    for (int i = 0; i < 1000; ++i) {
      t += 0.001;
      bar.advance();
    }
  }  // the destructor finishes the line
  const std::string out = contents(f);
  EXPECT_LE(count(out, '\r'), 11) << out;
  EXPECT_GE(count(out, '\r'), 9) << out;
  EXPECT_EQ(count(out, '\n'), 1);
  EXPECT_EQ(out.back(), '\n');
  std::fclose(f);
}

TEST(ProgressBar, QuietWritesNothing) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar(f, 10, ProgressOptions{.style = ProgressStyle::kQuiet});
    for (int i = 0; i < 10; ++i) bar.advance();
  }
  EXPECT_EQ(contents(f), "");
  std::fclose(f);
  ProgressBar none(nullptr, 10);
  none.advance(3);
  EXPECT_EQ(none.style(), ProgressStyle::kQuiet);
  EXPECT_EQ(none.done(), 3);
}

}  // namespace
}  // namespace heed::io

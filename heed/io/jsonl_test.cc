// Tests for the JSON-lines metric log: one object per line, appended, field order kept.
#include "heed/io/jsonl.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "heed/tensor/error.h"

namespace heed::io {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(Jsonl, RecordKeepsOrderAndWritesNullForNonFinite) {
  JsonlRecord r;
  r.add("step", 10).add("loss", 1.5).add("split", "valid \"set\"\n").add("best", true);
  r.add("nan", std::numeric_limits<double>::quiet_NaN());
  r.add("step", int64_t{11});
  EXPECT_EQ(r.to_json(), R"({"step":11,"loss":1.5,"split":"valid \"set\"\n","best":true,"nan":null})");
}

TEST(Jsonl, AppendsOneFlushedObjectPerLine) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "heed_jsonl_test.jsonl").string();
  std::filesystem::remove(path);
  {
    JsonlWriter log(path);
    log.write(JsonlRecord().add("step", 1).add("loss", 2.25));
    // Flushed at once: readable while the writer is still open.
    ASSERT_EQ(read_lines(path).size(), 1u);
    log.write_json("{\n  \"step\": 2,\n  \"wer\": 0.25\n}");
  }
  {
    JsonlWriter again(path);  // append, not truncate
    again.write(JsonlRecord().add("event", "resume"));
  }
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  const auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["step"], 1);
  EXPECT_EQ(first["loss"], 2.25);
  EXPECT_EQ(lines[1], R"({"step":2,"wer":0.25})");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["event"], "resume");
  std::filesystem::remove(path);
}

TEST(Jsonl, RejectsNonObjectsAndUnwritablePaths) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "heed_jsonl_bad.jsonl").string();
  {
    JsonlWriter log(path);
    EXPECT_THROW(log.write_json("[1, 2]"), Error);
    EXPECT_THROW(log.write_json("{\"a\": "), Error);
  }
  EXPECT_TRUE(read_lines(path).empty());
  std::filesystem::remove(path);
  EXPECT_THROW(JsonlWriter("/nonexistent/heed/log.jsonl"), Error);
}

}  // namespace
}  // namespace heed::io

// A JSON-lines metric log: one JSON object per line, appended and flushed line by line,
// so a crashed or running job's log is always readable (`tail -f`, pandas.read_json).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace heed::io {

// The fields of one line, in the order added. Setting a name again replaces its value.
// Non-finite doubles are written as null (JSON has no NaN or infinity).
class JsonlRecord {
 public:
  using Value = std::variant<int64_t, double, std::string, bool>;

  JsonlRecord& add(std::string_view name, int64_t value);
  JsonlRecord& add(std::string_view name, int value) { return add(name, static_cast<int64_t>(value)); }
  JsonlRecord& add(std::string_view name, double value);
  JsonlRecord& add(std::string_view name, std::string_view value);
  JsonlRecord& add(std::string_view name, const char* value) { return add(name, std::string_view(value)); }
  JsonlRecord& add(std::string_view name, bool value);

  const std::vector<std::pair<std::string, Value>>& fields() const { return fields_; }
  // The record as one line of compact JSON, without the newline.
  std::string to_json() const;

 private:
  JsonlRecord& put(std::string_view name, Value value);
  std::vector<std::pair<std::string, Value>> fields_;
};

class JsonlWriter {
 public:
  // Opens `path` for appending (creating it, not its folder); throws heed::Error when
  // it cannot.
  explicit JsonlWriter(const std::string& path);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  void write(const JsonlRecord& record);
  // A JSON object given as text, re-written compactly on one line; throws heed::Error
  // when `object_json` is not one JSON object.
  void write_json(std::string_view object_json);

  const std::string& path() const { return path_; }

 private:
  void write_line(const std::string& line);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace heed::io

// JSON lines with nlohmann::ordered_json (keeps field order), one fwrite + fflush a line.
#include "heed/io/jsonl.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "heed/tensor/error.h"

namespace heed::io {

JsonlRecord& JsonlRecord::put(std::string_view name, Value value) {
  for (auto& [n, v] : fields_) {
    if (n == name) {
      v = std::move(value);
      return *this;
    }
  }
  fields_.emplace_back(std::string(name), std::move(value));
  return *this;
}

JsonlRecord& JsonlRecord::add(std::string_view name, int64_t value) { return put(name, value); }
JsonlRecord& JsonlRecord::add(std::string_view name, double value) { return put(name, value); }
JsonlRecord& JsonlRecord::add(std::string_view name, std::string_view value) { return put(name, std::string(value)); }
JsonlRecord& JsonlRecord::add(std::string_view name, bool value) { return put(name, value); }

std::string JsonlRecord::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [name, value] : fields_) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, double>) {
            if (std::isfinite(v)) {
              j[name] = v;
            } else {
              j[name] = nullptr;
            }
          } else {
            j[name] = v;
          }
        },
        value);
  }
  // `replace` turns invalid UTF-8 in strings into U+FFFD instead of throwing.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "ab");
  HEED_CHECK(file_ != nullptr, "JsonlWriter: cannot open '", path, "' for appending: ", std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void JsonlWriter::write(const JsonlRecord& record) { write_line(record.to_json()); }

void JsonlWriter::write_json(std::string_view object_json) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(object_json, nullptr, /*allow_exceptions=*/false);
  HEED_CHECK(!j.is_discarded() && j.is_object(), "JsonlWriter::write_json: '", object_json.substr(0, 80),
             "' expected one JSON object");
  write_line(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

void JsonlWriter::write_line(const std::string& line) {
  std::string buf = line;
  buf += '\n';
  const size_t n = std::fwrite(buf.data(), 1, buf.size(), file_);
  HEED_CHECK(n == buf.size() && std::fflush(file_) == 0, "JsonlWriter: writing to '", path_,
             "' failed: ", std::strerror(errno));
}

}  // namespace heed::io

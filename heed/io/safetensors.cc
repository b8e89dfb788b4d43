// safetensors reader (validating every field of the header against the file) and atomic writer.
#include "heed/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "heed/io/atomic_file.h"

namespace heed::io {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

// A dtype as stored in the file; F16 is not a heed dtype and is widened on request.
struct FileDType {
  DType dtype;      // what the RawTensor will hold
  size_t item;      // bytes per element in the file
  bool f16 = false;
};

// dtype names the format defines that heed does not read.
const std::set<std::string>& unsupported_dtypes() {
  static const std::set<std::string> names = {"BOOL",    "I8",      "I16",     "I32",
                                              "U16",     "U32",     "U64",     "F8_E4M3",
                                              "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                              "F4",      "C64"};
  return names;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

struct Entry {
  std::string name;
  std::string dtype_text;
  FileDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Parses the header, recording the first key repeated within one JSON object (nlohmann
// itself keeps the last value silently).
Json parse_header(const std::string& text, const std::string& where) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  Json::parser_callback_t on_event = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default: break;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, on_event);
  } catch (const Json::exception& e) {
    fail(where, ": header is not valid JSON: ", e.what());
  }
  if (!duplicate.empty()) fail(where, ": duplicate name '", duplicate, "' in the header");
  return header;
}

FileDType parse_dtype(const std::string& name, const std::string& text, const std::string& where,
                      const SafetensorsReadOptions& options) {
  if (text == "F32") return {DType::kF32, 4};
  if (text == "F64") return {DType::kF64, 8};
  if (text == "I64") return {DType::kI64, 8};
  if (text == "U8") return {DType::kU8, 1};
  if (text == "BF16") return {DType::kBF16, 2};
  if (text == "F16") {
    HEED_CHECK(options.f16_to_f32, where, ": tensor '", name,
               "' has dtype F16; heed holds no F16, read it with "
               "SafetensorsReadOptions{.f16_to_f32 = true}");
    return {DType::kF32, 2, true};
  }
  if (unsupported_dtypes().count(text)) {
    fail(where, ": tensor '", name, "' has dtype ", text,
         " which heed does not read (expected F32, F64, I64, U8, BF16 or F16)");
  }
  fail(where, ": tensor '", name, "' has unknown dtype '", text, "'");
}

uint64_t parse_unsigned(const Json& v, const std::string& what) {
  HEED_CHECK(v.is_number_unsigned(), what, " is ", v.dump(), ", expected a non-negative integer");
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const Json& info, const std::string& where,
                  const SafetensorsReadOptions& options) {
  const std::string what = where + ": tensor '" + name + "'";
  HEED_CHECK(info.is_object(), what, " is described by ", info.type_name(),
             ", expected an object with dtype, shape and data_offsets");
  for (const auto& [key, value] : info.items()) {
    HEED_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", what,
               " has unknown field '", key, "' (expected dtype, shape, data_offsets)");
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    HEED_CHECK(info.contains(key), what, " has no '", key, "' field");
  }
  Entry e;
  e.name = name;
  const Json& dtype = info.at("dtype");
  HEED_CHECK(dtype.is_string(), what, " has dtype ", dtype.dump(), ", expected a string");
  e.dtype_text = dtype.get<std::string>();
  e.dtype = parse_dtype(name, e.dtype_text, where, options);

  const Json& shape = info.at("shape");
  HEED_CHECK(shape.is_array(), what, " has shape ", shape.dump(), ", expected an array");
  for (const Json& d : shape) {
    const uint64_t dim = parse_unsigned(d, what + " shape entry");
    HEED_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), what,
               " shape entry ", dim, " is too large");
    e.shape.push_back(static_cast<int64_t>(dim));
  }

  const Json& offsets = info.at("data_offsets");
  HEED_CHECK(offsets.is_array() && offsets.size() == 2, what, " has data_offsets ", offsets.dump(),
             ", expected [begin, end]");
  e.begin = parse_unsigned(offsets[0], what + " data_offsets begin");
  e.end = parse_unsigned(offsets[1], what + " data_offsets end");
  HEED_CHECK(e.begin <= e.end, what, " has data_offsets [", e.begin, ", ", e.end,
             "] with begin after end");

  const auto numel = static_cast<uint64_t>(shape_numel(e.shape, what));
  HEED_CHECK(numel <= std::numeric_limits<uint64_t>::max() / e.dtype.item, what,
             ": byte size overflows");
  const uint64_t want = numel * e.dtype.item;
  HEED_CHECK(e.end - e.begin == want, what, " (", e.dtype_text, ", shape ", shape_text(e.shape),
             ") has data_offsets [", e.begin, ", ", e.end, "] spanning ", e.end - e.begin,
             " bytes, expected ", want, " = shape * dtype size");
  return e;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF64: return "F64";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
    case DType::kBF16: return "BF16";
  }
  fail("safetensors: unknown heed dtype");
}

SafetensorsFile read_safetensors(const std::filesystem::path& path,
                                 const SafetensorsReadOptions& options) {
  const std::string where = "read_safetensors: '" + path.string() + "'";
  FileReader file(path);
  const uint64_t file_size = file.size();
  HEED_CHECK(file_size >= 8, where, ": truncated: the file has ", file_size,
             " bytes, expected at least 8 for the header length");
  uint64_t header_size = 0;
  file.read_at(0, &header_size, 8);
  HEED_CHECK(header_size <= file_size - 8, where, ": header length ", header_size,
             " is larger than the ", file_size - 8,
             " bytes that follow it (truncated file, or not safetensors)");
  HEED_CHECK(header_size <= kMaxHeaderBytes, where, ": header length ", header_size,
             " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  std::string text(header_size, '\0');
  file.read_at(8, text.data(), text.size());
  const Json header = parse_header(text, where);
  HEED_CHECK(header.is_object(), where, ": header is a JSON ", header.type_name(),
             ", expected an object");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      HEED_CHECK(value.is_object(), where, ": __metadata__ is a JSON ", value.type_name(),
                 ", expected an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        HEED_CHECK(mv.is_string(), where, ": __metadata__ entry '", mk, "' is ", mv.dump(),
                   ", expected a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, value, where, options));
  }

  // The data buffer must be covered exactly: no tensor beyond it, no overlap, no gap.
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  for (const Entry& e : entries) {
    HEED_CHECK(e.end <= data_size, where, ": tensor '", e.name, "' has data_offsets [", e.begin, ", ",
               e.end, "] beyond the data buffer of ", data_size, " bytes (truncated file?)");
  }
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < covered) {
      fail(where, ": tensors '", previous->name, "' [", previous->begin, ", ", previous->end,
           ") and '", e->name, "' [", e->begin, ", ", e->end, ") overlap");
    }
    HEED_CHECK(e->begin == covered, where, ": bytes [", covered, ", ", e->begin,
               ") of the data buffer belong to no tensor (gap before '", e->name, "')");
    covered = e->end;
    previous = e;
  }
  HEED_CHECK(covered == data_size, where, ": the data buffer has ", data_size,
             " bytes but the tensors cover only ", covered, " (trailing bytes)");

  for (const Entry& e : entries) {
    RawTensor t;
    t.dtype = e.dtype.dtype;
    t.shape = e.shape;
    std::vector<std::byte> bytes(e.end - e.begin);
    if (!bytes.empty()) file.read_at(data_start + e.begin, bytes.data(), bytes.size());
    t.data = e.dtype.f16 ? f16_bytes_to_f32_bytes(bytes.data(), bytes.size() / 2) : std::move(bytes);
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = "write_safetensors: '" + path.string() + "'";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[kMetadataKey] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    HEED_CHECK(!name.empty(), where, ": a tensor has an empty name");
    HEED_CHECK(name != kMetadataKey, where, ": '", name, "' is reserved and cannot name a tensor");
    check_raw_tensor(t, where + ": tensor '" + name + "'");
    const uint64_t size = t.data.size();
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    fail(where, ": a tensor name or metadata string is not valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomically(path, [&](FileSink& sink) {
    const uint64_t header_size = text.size();
    sink.write(&header_size, 8);
    sink.write(text);
    for (const auto& [name, t] : tensors) sink.write(std::span<const std::byte>(t.data));
  });
}

}  // namespace heed::io

// Tests for the safetensors reader/writer: round trips, every corrupt-file class, and
// interoperability with the Hugging Face `safetensors` Python package.
#include "heed/io/safetensors.h"


#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include <gtest/gtest.h>

#include "heed/io/atomic_file.h"
#include "tests/io/io_test_support.h"

namespace heed::io {
namespace {

namespace fs = std::filesystem;
using test_support::patterned;
using test_support::python_has;
using test_support::read_bytes;
using test_support::TempDir;
using test_support::write_bytes;

// A file made by hand: 8-byte length (defaulting to the header's size), header, data.
std::string hand_made(const std::string& header, const std::string& data,
                      std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(header.size());
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void expect_same(const RawTensor& got, const RawTensor& want, const std::string& name) {
  EXPECT_EQ(got.dtype, want.dtype) << name;
  EXPECT_EQ(got.shape, want.shape) << name;
  ASSERT_EQ(got.data.size(), want.data.size()) << name;
  for (size_t i = 0; i < want.data.size(); ++i) {
    ASSERT_EQ(got.data[i], want.data[i]) << name << ": first differing byte " << i;
  }
}

// Runs read_safetensors on `bytes` and returns the heed::Error message ("" if none).
std::string read_error(const TempDir& dir, const std::string& bytes,
                       const SafetensorsReadOptions& options = {}) {
  const fs::path p = dir / "broken.safetensors";
  write_bytes(p, bytes);
  try {
    read_safetensors(p, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::vector<DType> kAllDTypes = {DType::kF32, DType::kF64, DType::kI64, DType::kU8, DType::kBF16};
const std::vector<std::vector<int64_t>> kOddShapes = {{}, {0}, {1}, {7}, {257}, {2, 0, 3}, {3, 7}, {1, 257, 1}};

TEST(Safetensors, RoundTripsEveryDTypeAndOddShapes) {
  TempDir dir;
  std::map<std::string, RawTensor> tensors;
  int salt = 0;
  for (DType dt : kAllDTypes) {
    for (const auto& shape : kOddShapes) {
      std::string name = std::string(dtype_name(dt)) + ".rank" + std::to_string(shape.size()) + ".n" +
                         std::to_string(shape_numel(shape, "test")) + "." + std::to_string(salt);
      tensors[name] = patterned(dt, shape, salt++);
    }
  }
  // Values a careless writer would mangle: signed zero, infinities, NaN, denormals.
  const std::vector<float> specials = {-0.0f, std::numeric_limits<float>::infinity(),
                                       -std::numeric_limits<float>::infinity(),
                                       std::numeric_limits<float>::quiet_NaN(),
                                       std::numeric_limits<float>::denorm_min()};
  tensors["specials"] = make_raw_tensor<float>({5}, specials);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode ok"}};
  const fs::path p = dir / "all.safetensors";
  write_safetensors(p, tensors, metadata);
  const SafetensorsFile back = read_safetensors(p);
  EXPECT_EQ(back.metadata, metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(back.tensors.count(name)) << name;
    expect_same(back.tensors.at(name), t, name);
  }
}

TEST(Safetensors, WriterIsDeterministicSortedAndPadded) {
  TempDir dir;
  std::map<std::string, RawTensor> tensors = {{"z", patterned(DType::kF32, {3}, 1)},
                                              {"a", patterned(DType::kU8, {5}, 2)},
                                              {"m.n", patterned(DType::kI64, {2, 2}, 3)}};
  write_safetensors(dir / "1.safetensors", tensors, {{"k", "v"}});
  write_safetensors(dir / "2.safetensors", tensors, {{"k", "v"}});
  const std::string bytes = read_bytes(dir / "1.safetensors");
  EXPECT_EQ(bytes, read_bytes(dir / "2.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 3 * 4 + 5 + 4 * 8);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' ') + 1, header.find_last_of('}') + 1);
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"__metadata__", "a", "m.n", "z"}));
  // Data in name order, contiguous from 0.
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json::array({0, 5}));
  EXPECT_EQ(j["m.n"]["data_offsets"], nlohmann::json::array({5, 37}));
  EXPECT_EQ(j["z"]["data_offsets"], nlohmann::json::array({37, 49}));
  EXPECT_EQ(j["m.n"]["dtype"], "I64");
}

TEST(Safetensors, EmptyFileHasNoMetadataKey) {
  TempDir dir;
  write_safetensors(dir / "e.safetensors", {});
  const std::string bytes = read_bytes(dir / "e.safetensors");
  EXPECT_EQ(bytes.substr(8, 2), "{}");
  const SafetensorsFile back = read_safetensors(dir / "e.safetensors");
  EXPECT_TRUE(back.tensors.empty());
  EXPECT_TRUE(back.metadata.empty());
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  RawTensor bad = patterned(DType::kF32, {2, 3}, 0);
  bad.data.pop_back();
  auto message = [&](const std::map<std::string, RawTensor>& t) -> std::string {
    try {
      write_safetensors(dir / "w.safetensors", t);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({{"x", bad}}).find("holds 23 bytes, expected 24"), std::string::npos);
  EXPECT_NE(message({{"", patterned(DType::kU8, {1}, 0)}}).find("empty name"), std::string::npos);
  EXPECT_NE(message({{"__metadata__", patterned(DType::kU8, {1}, 0)}}).find("reserved"), std::string::npos);
  EXPECT_NE(message({{"bad\xff", patterned(DType::kU8, {1}, 0)}}).find("UTF-8"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "w.safetensors"));
}

TEST(Safetensors, ReadsFileWrittenByHand) {
  TempDir dir;
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[8,10]},)"
      R"("a":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"__metadata__":{"x":"y"}}   )";
  const double v = -2.5;
  std::string data(8, '\0');
  std::memcpy(data.data(), &v, 8);
  data += "\x03\x04";
  write_bytes(dir / "h.safetensors", hand_made(header, data));
  const SafetensorsFile f = read_safetensors(dir / "h.safetensors");
  EXPECT_EQ(f.metadata.at("x"), "y");
  EXPECT_EQ(raw_tensor_values<double>(f.tensors.at("a")), std::vector<double>{-2.5});
  EXPECT_TRUE(f.tensors.at("a").shape.empty());
  EXPECT_EQ(raw_tensor_values<uint8_t>(f.tensors.at("b")), (std::vector<uint8_t>{3, 4}));
}

// One test per corrupt-file class; each asserts that the message names the problem.
TEST(SafetensorsCorrupt, TruncatedBeforeHeaderLength) {
  TempDir dir;
  const std::string m = read_error(dir, std::string("\x10\x00\x00", 3));
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_NE(m.find("3 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("broken.safetensors"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, HeaderLengthLargerThanFile) {
  TempDir dir;
  const std::string m = read_error(dir, hand_made("{}", "", 1000));
  EXPECT_NE(m.find("header length 1000 is larger than the 2 bytes"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, TruncatedData) {
  TempDir dir;
  write_safetensors(dir / "ok.safetensors", {{"x", patterned(DType::kF32, {6}, 0)}});
  std::string bytes = read_bytes(dir / "ok.safetensors");
  bytes.resize(bytes.size() - 4);
  const std::string m = read_error(dir, bytes);
  EXPECT_NE(m.find("tensor 'x' has data_offsets [0, 24] beyond the data buffer of 20 bytes"),
            std::string::npos) << m;
}

TEST(SafetensorsCorrupt, JsonDoesNotParse) {
  TempDir dir;
  const std::string m = read_error(dir, hand_made(R"({"a": {"dtype": "F32", )", ""));
  EXPECT_NE(m.find("header is not valid JSON"), std::string::npos) << m;
  const std::string m2 = read_error(dir, hand_made(R"([1, 2])", ""));
  EXPECT_NE(m2.find("header is a JSON array, expected an object"), std::string::npos) << m2;
}

TEST(SafetensorsCorrupt, UnknownAndUnsupportedDType) {
  TempDir dir;
  std::string m = read_error(dir, hand_made(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})",
                                            std::string(4, '\0')));
  EXPECT_NE(m.find("tensor 'a' has unknown dtype 'F33'"), std::string::npos) << m;
  m = read_error(dir, hand_made(R"({"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                                std::string(4, '\0')));
  EXPECT_NE(m.find("dtype I32 which heed does not read"), std::string::npos) << m;
  m = read_error(dir, hand_made(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})",
                                std::string(4, '\0')));
  EXPECT_NE(m.find("has dtype 7, expected a string"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, OffsetsOutOfRange) {
  TempDir dir;
  const std::string m = read_error(
      dir, hand_made(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(8, '\0')));
  EXPECT_NE(m.find("data_offsets [4, 12] beyond the data buffer of 8 bytes"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, OffsetsOverlap) {
  TempDir dir;
  const std::string m = read_error(
      dir, hand_made(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     std::string(12, '\0')));
  EXPECT_NE(m.find("tensors 'a' [0, 8) and 'b' [4, 12) overlap"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, OffsetsDoNotMatchShapeTimesDTypeSize) {
  TempDir dir;
  const std::string m = read_error(
      dir, hand_made(R"({"a":{"dtype":"F64","shape":[2,3],"data_offsets":[0,24]}})", std::string(24, '\0')));
  EXPECT_NE(m.find("tensor 'a' (F64, shape [2, 3]) has data_offsets [0, 24] spanning 24 bytes, expected 48"),
            std::string::npos) << m;
  const std::string m2 = read_error(
      dir, hand_made(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::string(8, '\0')));
  EXPECT_NE(m2.find("begin after end"), std::string::npos) << m2;
}

TEST(SafetensorsCorrupt, GapsAndTrailingBytes) {
  TempDir dir;
  std::string m = read_error(dir, hand_made(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                            std::string(4, '\0')));
  EXPECT_NE(m.find("bytes [0, 2) of the data buffer belong to no tensor"), std::string::npos) << m;
  m = read_error(dir, hand_made(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                                std::string(5, '\0')));
  EXPECT_NE(m.find("the data buffer has 5 bytes but the tensors cover only 2"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, DuplicateNames) {
  TempDir dir;
  const std::string m = read_error(
      dir, hand_made(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                     std::string(2, '\0')));
  EXPECT_NE(m.find("duplicate name 'a'"), std::string::npos) << m;
}

TEST(SafetensorsCorrupt, MalformedEntries) {
  TempDir dir;
  const std::string four(4, '\0');
  struct Case {
    std::string header;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "shape entry is -1, expected a non-negative"},
      {R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", "shape entry is 1.0"},
      {R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", "has shape 4, expected an array"},
      {R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "has no 'shape' field"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "unknown field 'x'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "expected [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", "data_offsets end is -4"},
      {R"({"a":[1,2]})", "is described by array"},
      {R"({"__metadata__":{"k":1}})", "__metadata__ entry 'k' is 1, expected a string"},
      {R"({"__metadata__":[]})", "__metadata__ is a JSON array"},
      {R"({"a":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,4]}})", "overflows"},
  };
  for (const Case& c : cases) {
    const std::string m = read_error(dir, hand_made(c.header, four));
    EXPECT_NE(m.find(c.expected), std::string::npos) << "header " << c.header << "\nmessage: " << m;
  }
}

TEST(Safetensors, F16IsReadWidenedOnlyOnRequest) {
  TempDir dir;
  // 1.0, -2.0, 65504 (max half), 2^-24 (smallest subnormal), -0.0
  const uint16_t halves[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000};
  std::string data(reinterpret_cast<const char*>(halves), sizeof(halves));
  const std::string bytes =
      hand_made(R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]}})", data);
  const std::string m = read_error(dir, bytes);
  EXPECT_NE(m.find("dtype F16"), std::string::npos) << m;
  write_bytes(dir / "h.safetensors", bytes);
  const SafetensorsFile f = read_safetensors(dir / "h.safetensors", {.f16_to_f32 = true});
  const std::vector<float> got = raw_tensor_values<float>(f.tensors.at("h"));
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[1], -2.0f);
  EXPECT_EQ(got[2], 65504.0f);
  EXPECT_EQ(got[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(got[4], 0.0f);
  EXPECT_TRUE(std::signbit(got[4]));
}

TEST(Safetensors, MissingFileNamesPathAndOsError) {
  try {
    read_safetensors("/nonexistent-heed-dir/x.safetensors");
    FAIL() << "expected heed::Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("/nonexistent-heed-dir/x.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
  }
}

// Interoperability with the `safetensors` Python package, when it is installed.
TEST(SafetensorsInterop, PythonPackageReadsHeedFilesAndHeedReadsPythonFiles) {
  if (!python_has("safetensors, numpy")) GTEST_SKIP() << "python3 with safetensors and numpy not found";
  TempDir dir;
  struct Spec {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  // The same list, in the same order (the salt), as SPEC in check_safetensors_interop.py.
  const std::vector<Spec> spec = {{"attn.f32", DType::kF32, {3, 5}},  {"attn.f64", DType::kF64, {2, 3, 4}},
                                  {"ids.i64", DType::kI64, {7}},      {"bytes.u8", DType::kU8, {257}},
                                  {"w.bf16", DType::kBF16, {4, 6}},   {"scalar.f64", DType::kF64, {}},
                                  {"empty.f32", DType::kF32, {2, 0, 3}}};
  std::map<std::string, RawTensor> tensors;
  for (size_t k = 0; k < spec.size(); ++k) {
    tensors[spec[k].name] = patterned(spec[k].dtype, spec[k].shape, static_cast<int>(k));
  }
  const fs::path heed_file = dir / "from_heed.safetensors";
  const fs::path python_file = dir / "from_python.safetensors";
  write_safetensors(heed_file, tensors, {{"writer", "heed"}, {"purpose", "interop"}});

  const std::string script = std::string(HEED_SOURCE_DIR) + "/tests/io/check_safetensors_interop.py";
  const std::string cmd = "python3 '" + script + "' --check '" + heed_file.string() + "' --write '" +
                          python_file.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  const SafetensorsFile back = read_safetensors(python_file, {.f16_to_f32 = true});
  EXPECT_EQ(back.metadata, (std::map<std::string, std::string>{{"writer", "safetensors-python"},
                                                               {"purpose", "interop"}}));
  ASSERT_EQ(back.tensors.size(), spec.size() + 1);
  constexpr int kPythonSalt = 100;
  for (size_t k = 0; k < spec.size(); ++k) {
    expect_same(back.tensors.at(spec[k].name),
                patterned(spec[k].dtype, spec[k].shape, static_cast<int>(k) + kPythonSalt), spec[k].name);
  }
  // The F16 tensor that only Python writes, widened to F32 by heed.
  expect_same(back.tensors.at("half.f16"),
              patterned(DType::kF32, {5}, static_cast<int>(spec.size()) + kPythonSalt), "half.f16");
}

}  // namespace
}  // namespace heed::io

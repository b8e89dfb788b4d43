// Tests for the .npy reader/writer: round trips, NumPy-written fixtures (tests/data/npy),
// header layout, and every way a file can be refused.
#include "heed/io/npy.h"


#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "tests/io/io_test_support.h"

namespace heed::io {
namespace {

namespace fs = std::filesystem;
using test_support::patterned;
using test_support::python_has;
using test_support::read_bytes;
using test_support::TempDir;
using test_support::write_bytes;

fs::path fixture(const std::string& name) { return fs::path(HEED_SOURCE_DIR) / "tests/data/npy" / name; }

// Version-1.0 file with the given header dict text and data bytes.
std::string npy_v1(const std::string& dict, const std::string& data) {
  std::string header = dict + "\n";
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

std::string read_error(const TempDir& dir, const std::string& bytes) {
  const fs::path p = dir / "broken.npy";
  write_bytes(p, bytes);
  try {
    read_npy(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string read_error(const fs::path& p) {
  try {
    read_npy(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Npy, RoundTripsEveryDTypeAndOddShapes) {
  TempDir dir;
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {1}, {7}, {257}, {2, 0, 3}, {3, 7}, {1, 257, 1}};
  int salt = 0;
  for (DType dt : {DType::kF32, DType::kF64, DType::kI64, DType::kU8, DType::kBF16}) {
    for (const auto& shape : shapes) {
      const RawTensor t = patterned(dt, shape, salt++);
      const fs::path p = dir / "t.npy";
      write_npy(p, t);
      const NpyArray back = read_npy_array(p);
      EXPECT_EQ(back.tensor.shape, t.shape);
      EXPECT_FALSE(back.is_bool);
      if (dt == DType::kBF16) {
        // NumPy has no bfloat16: written as exact f32 values.
        EXPECT_EQ(back.descr, "<f4");
        ASSERT_EQ(back.tensor.dtype, DType::kF32);
        const std::vector<float> got = raw_tensor_values<float>(back.tensor);
        const std::vector<bf16> want = raw_tensor_values<bf16>(t);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<float>(want[i])) << i;
      } else {
        EXPECT_EQ(back.tensor.dtype, t.dtype);
        EXPECT_TRUE(back.tensor.data == t.data) << dtype_name(dt) << " rank " << shape.size();
      }
    }
  }
}

TEST(Npy, WritesNumPyLayout) {
  TempDir dir;
  write_npy(dir / "a.npy", patterned(DType::kF32, {2, 3}, 0));
  const std::string bytes = read_bytes(dir / "a.npy");
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(bytes.size(), 10 + header_len + 24);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.substr(0, header.find('}') + 1), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  write_npy(dir / "s.npy", patterned(DType::kU8, {}, 0));
  EXPECT_NE(read_bytes(dir / "s.npy").find("'shape': (), }"), std::string::npos);
  write_npy(dir / "v.npy", patterned(DType::kI64, {7}, 0));
  EXPECT_NE(read_bytes(dir / "v.npy").find("'descr': '<i8', 'fortran_order': False, 'shape': (7,), }"),
            std::string::npos);
}

TEST(Npy, BoolElements) {
  TempDir dir;
  const std::vector<uint8_t> v = {1, 0, 0, 1, 1, 0};
  write_npy(dir / "b.npy", make_raw_tensor<uint8_t>({2, 3}, v), {.bool_elements = true});
  const NpyArray back = read_npy_array(dir / "b.npy");
  EXPECT_EQ(back.descr, "|b1");
  EXPECT_TRUE(back.is_bool);
  EXPECT_EQ(raw_tensor_values<uint8_t>(back.tensor), v);

  const std::vector<uint8_t> two = {0, 2};
  try {
    write_npy(dir / "bad.npy", make_raw_tensor<uint8_t>({2}, two), {.bool_elements = true});
    FAIL() << "expected heed::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("element 1 is 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_npy(dir / "bad.npy", patterned(DType::kF32, {2}, 0), {.bool_elements = true}), Error);
  EXPECT_FALSE(fs::exists(dir / "bad.npy"));
}

TEST(Npy, LargeHeaderUsesVersion2) {
  TempDir dir;
  // 30000 dimensions of 1 need a header longer than version 1.0's 65535 bytes. (NumPy
  // itself caps arrays at 64 dimensions; this exercises the format, not NumPy.)
  const std::vector<int64_t> shape(30000, 1);
  const std::vector<double> one = {0.5};
  write_npy(dir / "big.npy", make_raw_tensor<double>(shape, one));
  const std::string bytes = read_bytes(dir / "big.npy");
  EXPECT_EQ(bytes[6], 2);
  uint32_t len = 0;
  std::memcpy(&len, bytes.data() + 8, 4);
  EXPECT_EQ((12 + len) % 64, 0u);
  const RawTensor back = read_npy(dir / "big.npy");
  EXPECT_EQ(back.shape, shape);
  EXPECT_EQ(raw_tensor_values<double>(back), one);
}

TEST(Npy, ReadsVersion3AndDoubleQuotedHeaders) {
  TempDir dir;
  const std::string header = "{\"descr\": \"<f8\", \"shape\": (2,), \"fortran_order\": False}  \n";
  std::string bytes = std::string("\x93NUMPY\x03\x00", 8);
  const uint32_t len = static_cast<uint32_t>(header.size());
  bytes.append(reinterpret_cast<const char*>(&len), 4);
  const double values[] = {1.5, -3.0};
  bytes += header + std::string(reinterpret_cast<const char*>(values), 16);
  write_bytes(dir / "v3.npy", bytes);
  EXPECT_EQ(raw_tensor_values<double>(read_npy(dir / "v3.npy")), (std::vector<double>{1.5, -3.0}));
}

// Files written by NumPy itself (tests/data/npy/make_npy_fixtures.py): element i of a
// float array is (i - 3) / 4.
TEST(NpyFixtures, ReadsFilesNumPyWrote) {
  auto ramp = [](size_t n) {
    std::vector<double> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = (static_cast<double>(i) - 3) / 4;
    return v;
  };
  const RawTensor f4 = read_npy(fixture("f4_2x3.npy"));
  EXPECT_EQ(f4.shape, (std::vector<int64_t>{2, 3}));
  const std::vector<float> f4v = raw_tensor_values<float>(f4);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(f4v[i], static_cast<float>(ramp(6)[i])) << i;

  const RawTensor f8 = read_npy(fixture("f8_scalar.npy"));
  EXPECT_TRUE(f8.shape.empty());
  EXPECT_EQ(raw_tensor_values<double>(f8), std::vector<double>{-2.25});

  const RawTensor empty = read_npy(fixture("i8_0x3.npy"));
  EXPECT_EQ(empty.dtype, DType::kI64);
  EXPECT_EQ(empty.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(empty.data.empty());

  const std::vector<int64_t> i8 = raw_tensor_values<int64_t>(read_npy(fixture("i8_7.npy")));
  ASSERT_EQ(i8.size(), 7u);
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(i8[i], (i - 3) * (int64_t{1} << 40));

  const std::vector<uint8_t> u1 = raw_tensor_values<uint8_t>(read_npy(fixture("u1_257.npy")));
  ASSERT_EQ(u1.size(), 257u);
  for (size_t i = 0; i < 257; ++i) EXPECT_EQ(u1[i], i * 7 % 256) << i;

  const NpyArray b1 = read_npy_array(fixture("b1_2x2.npy"));
  EXPECT_TRUE(b1.is_bool);
  EXPECT_EQ(b1.descr, "|b1");
  EXPECT_EQ(raw_tensor_values<uint8_t>(b1.tensor), (std::vector<uint8_t>{1, 0, 0, 1}));

  const NpyArray f2 = read_npy_array(fixture("f2_5.npy"));
  EXPECT_EQ(f2.descr, "<f2");
  EXPECT_EQ(f2.tensor.dtype, DType::kF32);
  const std::vector<float> f2v = raw_tensor_values<float>(f2.tensor);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(f2v[i], static_cast<float>(ramp(5)[i])) << i;
}

TEST(NpyFixtures, RefusesFortranOrderBigEndianAndUnsupportedDTypes) {
  std::string m = read_error(fixture("fortran_2x3.npy"));
  EXPECT_NE(m.find("Fortran-order"), std::string::npos) << m;
  EXPECT_NE(m.find("fortran_2x3.npy"), std::string::npos) << m;
  m = read_error(fixture("big_endian_f4.npy"));
  EXPECT_NE(m.find("dtype '>f4' is big-endian"), std::string::npos) << m;
  m = read_error(fixture("i4_3.npy"));
  EXPECT_NE(m.find("unsupported dtype '<i4'"), std::string::npos) << m;
}

TEST(NpyCorrupt, EveryClassNamesTheProblem) {
  TempDir dir;
  const std::string f8 = std::string(8, '\0');
  struct Case {
    std::string bytes;
    std::string expected;
  };
  const std::string good_dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
  const std::vector<Case> cases = {
      {"\x93NUM", "truncated: the file has 4 bytes"},
      {std::string("PK\x03\x04 not npy at all"), "not a .npy file"},
      {std::string("\x93NUMPY\x04\x00\x10\x00", 10) + std::string(16, ' '), "unsupported .npy format version 4.0"},
      {std::string("\x93NUMPY\x01\x00\xff\x00", 10) + "{'descr'", "header length 255 is larger than the 8 bytes"},
      {npy_v1(good_dict, std::string(4, '\0')), "truncated: the data holds 4 bytes, expected 8"},
      {npy_v1(good_dict, std::string(9, '\0')), "1 unexpected bytes after the 8 bytes of data"},
      {npy_v1("{'descr': '<f8', 'shape': (1,), }", f8), "missing key"},
      {npy_v1("{'descr': '<f8', 'fortran_order': false, 'shape': (1,), }", f8), "expected True or False"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", f8), "expected a non-negative integer"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", f8), "unexpected key 'x'"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", f8), "expected ',' or '}'"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} trailing", f8), "unexpected text after"},
      {npy_v1("{'descr': 'f8', 'fortran_order': False, 'shape': (1,), }", f8), "unsupported dtype 'f8'"},
      {npy_v1("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", f8), "unsupported dtype '<c8'"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", f8), "too large"},
      {npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f8), "overflows"},
  };
  for (const Case& c : cases) {
    const std::string m = read_error(dir, c.bytes);
    EXPECT_NE(m.find(c.expected), std::string::npos) << "expected \"" << c.expected << "\" in: " << m;
    EXPECT_NE(m.find("broken.npy"), std::string::npos) << m;
  }
}

TEST(NpyCorrupt, BoolBytesOtherThanZeroOneReadAsOne) {
  TempDir dir;
  write_bytes(dir / "b.npy", npy_v1("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                    std::string("\x00\x01\x07", 3)));
  EXPECT_EQ(raw_tensor_values<uint8_t>(read_npy(dir / "b.npy")), (std::vector<uint8_t>{0, 1, 1}));
}


// NumPy reads what heed writes (tests/io/check_npy_interop.py), when python3 has numpy.
TEST(NpyInterop, NumPyLoadsHeedFiles) {
  if (!python_has("numpy")) GTEST_SKIP() << "python3 with numpy not found";
  TempDir dir;
  auto ramp = [](size_t n) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i) - 3) / 4;
    return v;
  };
  write_npy(dir / "f4_2x3.npy", make_raw_tensor<float>({2, 3}, ramp(6)));
  write_npy(dir / "f8_scalar.npy", make_raw_tensor<double>({}, std::vector<double>{-2.25}));
  write_npy(dir / "i8_0x3.npy", make_raw_tensor<int64_t>({0, 3}, std::vector<int64_t>{}));
  std::vector<int64_t> i8(7);
  for (int64_t i = 0; i < 7; ++i) i8[i] = (i - 3) * (int64_t{1} << 40);
  write_npy(dir / "i8_7.npy", make_raw_tensor<int64_t>({7}, i8));
  std::vector<uint8_t> u1(257);
  for (size_t i = 0; i < 257; ++i) u1[i] = static_cast<uint8_t>(i * 7 % 256);
  write_npy(dir / "u1_257.npy", make_raw_tensor<uint8_t>({257}, u1));
  write_npy(dir / "b1_2x2.npy", make_raw_tensor<uint8_t>({2, 2}, std::vector<uint8_t>{1, 0, 0, 1}),
            {.bool_elements = true});
  std::vector<bf16> b(5);
  for (size_t i = 0; i < 5; ++i) b[i] = bf16(ramp(5)[i]);
  write_npy(dir / "bf16_5.npy", make_raw_tensor<bf16>({5}, b));
  const std::string cmd = "python3 '" + std::string(HEED_SOURCE_DIR) + "/tests/io/check_npy_interop.py' '" +
                          (dir / "").string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

}  // namespace
}  // namespace heed::io

// Helpers shared by the heed/io tests: a scratch directory, raw file access, a check for
// Python modules, and deterministic tensors whose formula the Python interop scripts share.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "heed/io/raw_tensor.h"

namespace heed::io::test_support {

// A fresh directory under the system temp dir, named after the running test and the
// process (ctest runs tests in parallel), removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("heed_io_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// True when `python3 -c "import <modules>"` succeeds.
inline bool python_has(const std::string& modules) {
  const std::string cmd = "python3 -c \"import " + modules + "\" > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// A tensor whose element i is: floats ((37 i + salt) mod 101 - 50) / 8 (exact in bf16),
// I64 (i - 3) * 2^40 + salt, U8 (7 i + salt) mod 256. tests/io/check_safetensors_interop.py
// computes the same values.
inline RawTensor patterned(DType dtype, std::vector<int64_t> shape, int salt) {
  const int64_t n = shape_numel(shape, "patterned");
  RawTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  const size_t item = dtype_size(dtype);
  t.data.resize(static_cast<size_t>(n) * item);
  for (int64_t i = 0; i < n; ++i) {
    const double f = static_cast<double>((37 * i + salt) % 101 - 50) / 8.0;
    std::byte* dst = t.data.data() + static_cast<size_t>(i) * item;
    switch (dtype) {
      case DType::kF32: {
        const auto v = static_cast<float>(f);
        std::memcpy(dst, &v, 4);
        break;
      }
      case DType::kF64: std::memcpy(dst, &f, 8); break;
      case DType::kI64: {
        const int64_t v = (i - 3) * (int64_t{1} << 40) + salt;
        std::memcpy(dst, &v, 8);
        break;
      }
      case DType::kU8: {
        const auto v = static_cast<uint8_t>((7 * i + salt) % 256);
        std::memcpy(dst, &v, 1);
        break;
      }
      case DType::kBF16: {
        const bf16 v(static_cast<float>(f));
        std::memcpy(dst, &v.bits, 2);
        break;
      }
    }
  }
  return t;
}

}  // namespace heed::io::test_support

// .npy reading (magic, version, the Python-dict header, then raw C-order data) and writing.
#include "heed/io/npy.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>

#include "heed/io/atomic_file.h"

namespace heed::io {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr size_t kHeaderAlign = 64;

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Parses the header: a Python dict literal with exactly the keys 'descr' (a string),
// 'fortran_order' (True/False) and 'shape' (a tuple of non-negative integers).
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        h.descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = parse_bool();
        have_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "' (expected descr, fortran_order, shape)");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++pos_;
    skip_space();
    if (pos_ != s_.size()) bad("unexpected text after the closing '}'");
    if (!have_descr || !have_order || !have_shape) {
      bad("missing key; the header needs descr, fortran_order and shape");
    }
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& why) const {
    fail(where_, ": malformed header at character ", pos_, ": ", why, " in \"", s_, "\"");
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    ++pos_;
    const size_t end = s_.find(quote, pos_);
    if (end == std::string::npos) bad("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    if (out.find('\\') != std::string::npos) bad("escapes in strings are not supported");
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    for (;;) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a non-negative integer in the shape");
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        const uint64_t digit = static_cast<uint64_t>(peek() - '0');
        if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - digit) / 10) {
          bad("shape entry too large");
        }
        v = v * 10 + digit;
        ++pos_;
      }
      shape.push_back(static_cast<int64_t>(v));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') bad("expected ',' or ')' in the shape");
    }
    ++pos_;
    return shape;
  }

  const std::string& s_;
  const std::string& where_;
  size_t pos_ = 0;
};

// How a descr maps onto heed: the RawTensor dtype, the element size in the file, and
// whether the file holds binary16 (to widen) or bool (to normalise to 0/1).
struct NpyElement {
  DType dtype;
  size_t item;
  bool f16 = false;
  bool is_bool = false;
};

NpyElement parse_descr(const std::string& descr, const std::string& where) {
  const std::string supported = "supported: '<f4', '<f8', '<i8', '|u1', '|b1', '<f2'";
  HEED_CHECK(descr.size() >= 2, where, ": unsupported dtype '", descr, "' (", supported, ")");
  const char order = descr[0];
  const std::string code = descr.substr(1);
  HEED_CHECK(order == '<' || order == '>' || order == '|' || order == '=', where,
             ": unsupported dtype '", descr, "' (", supported, ")");
  std::optional<NpyElement> e;
  if (code == "f4") e = NpyElement{DType::kF32, 4};
  else if (code == "f8") e = NpyElement{DType::kF64, 8};
  else if (code == "i8") e = NpyElement{DType::kI64, 8};
  else if (code == "u1") e = NpyElement{DType::kU8, 1};
  else if (code == "b1") e = NpyElement{DType::kU8, 1, false, true};
  else if (code == "f2") e = NpyElement{DType::kF32, 2, true};
  HEED_CHECK(e.has_value(), where, ": unsupported dtype '", descr, "' (", supported, ")");
  HEED_CHECK(order != '>' || e->item == 1, where, ": dtype '", descr,
             "' is big-endian; heed reads little-endian arrays (use a.astype(a.dtype.newbyteorder('<')))");
  return *e;
}

std::string shape_tuple(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

}  // namespace

NpyArray read_npy_array(const std::filesystem::path& path) {
  const std::string where = "read_npy: '" + path.string() + "'";
  FileReader file(path);
  const uint64_t size = file.size();
  HEED_CHECK(size >= 10, where, ": truncated: the file has ", size,
             " bytes, expected at least 10 for the magic, version and header length");
  unsigned char prefix[12] = {};
  file.read_at(0, prefix, 10);
  HEED_CHECK(std::memcmp(prefix, kMagic, kMagicSize) == 0, where,
             ": not a .npy file (the first 6 bytes are not \\x93NUMPY)");
  const int major = prefix[6];
  const int minor = prefix[7];
  HEED_CHECK(major >= 1 && major <= 3, where, ": unsupported .npy format version ", major, ".", minor,
             " (expected 1.0, 2.0 or 3.0)");
  uint64_t header_len = 0;
  uint64_t header_start = 10;
  if (major == 1) {
    header_len = static_cast<uint64_t>(prefix[8]) | (static_cast<uint64_t>(prefix[9]) << 8);
  } else {
    HEED_CHECK(size >= 12, where, ": truncated: the file has ", size,
               " bytes, expected at least 12 for a version ", major, " header length");
    file.read_at(10, prefix + 10, 2);
    uint32_t len32 = 0;
    std::memcpy(&len32, prefix + 8, 4);
    header_len = len32;
    header_start = 12;
  }
  HEED_CHECK(header_len <= size - header_start, where, ": truncated: header length ", header_len,
             " is larger than the ", size - header_start, " bytes that follow it");
  std::string text(header_len, '\0');
  file.read_at(header_start, text.data(), text.size());
  const NpyHeader header = HeaderParser(text, where).parse();
  const NpyElement element = parse_descr(header.descr, where);
  HEED_CHECK(!header.fortran_order, where,
             ": Fortran-order (column-major) arrays are not supported; save a C-order array "
             "(np.ascontiguousarray)");

  const auto numel = static_cast<uint64_t>(shape_numel(header.shape, where));
  HEED_CHECK(numel <= std::numeric_limits<uint64_t>::max() / element.item, where,
             ": byte size overflows");
  const uint64_t want = numel * element.item;
  const uint64_t data_start = header_start + header_len;
  const uint64_t have = size - data_start;
  HEED_CHECK(have >= want, where, ": truncated: the data holds ", have, " bytes, expected ", want,
             " for shape ", shape_tuple(header.shape), " and dtype '", header.descr, "'");
  HEED_CHECK(have == want, where, ": ", have - want, " unexpected bytes after the ", want,
             " bytes of data");

  std::vector<std::byte> bytes(want);
  if (want != 0) file.read_at(data_start, bytes.data(), bytes.size());
  NpyArray out;
  out.descr = header.descr;
  out.is_bool = element.is_bool;
  out.tensor.dtype = element.dtype;
  out.tensor.shape = header.shape;
  if (element.f16) {
    out.tensor.data = f16_bytes_to_f32_bytes(bytes.data(), numel);
  } else {
    if (element.is_bool) {
      for (std::byte& b : bytes) b = b != std::byte{0} ? std::byte{1} : std::byte{0};
    }
    out.tensor.data = std::move(bytes);
  }
  return out;
}

RawTensor read_npy(const std::filesystem::path& path) { return read_npy_array(path).tensor; }

void write_npy(const std::filesystem::path& path, const RawTensor& tensor,
               const NpyWriteOptions& options) {
  const std::string where = "write_npy: '" + path.string() + "'";
  check_raw_tensor(tensor, where);
  std::string descr;
  switch (tensor.dtype) {
    case DType::kF32: descr = "<f4"; break;
    case DType::kF64: descr = "<f8"; break;
    case DType::kI64: descr = "<i8"; break;
    case DType::kU8: descr = options.bool_elements ? "|b1" : "|u1"; break;
    case DType::kBF16: descr = "<f4"; break;
  }
  HEED_CHECK(!options.bool_elements || tensor.dtype == DType::kU8, where,
             ": bool_elements needs a u8 tensor, got ", dtype_name(tensor.dtype));
  if (options.bool_elements) {
    for (size_t i = 0; i < tensor.data.size(); ++i) {
      const auto v = static_cast<unsigned>(tensor.data[i]);
      HEED_CHECK(v <= 1, where, ": bool_elements needs values 0 or 1, element ", i, " is ", v);
    }
  }

  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_tuple(tensor.shape) + ", }";
  // Pad with spaces and end with '\n' so the data starts on a 64-byte boundary.
  const bool v2 = header.size() + 1 + 10 + kHeaderAlign > 65535;
  const size_t prefix = v2 ? 12 : 10;
  const size_t unpadded = prefix + header.size() + 1;
  header.append((kHeaderAlign - unpadded % kHeaderAlign) % kHeaderAlign, ' ');
  header.push_back('\n');

  std::string lead(kMagic, kMagicSize);
  lead.push_back(static_cast<char>(v2 ? 2 : 1));
  lead.push_back(0);
  const auto len = static_cast<uint32_t>(header.size());
  lead.push_back(static_cast<char>(len & 0xff));
  lead.push_back(static_cast<char>((len >> 8) & 0xff));
  if (v2) {
    lead.push_back(static_cast<char>((len >> 16) & 0xff));
    lead.push_back(static_cast<char>((len >> 24) & 0xff));
  }

  write_file_atomically(path, [&](FileSink& sink) {
    sink.write(lead);
    sink.write(header);
    if (tensor.dtype != DType::kBF16) {
      sink.write(std::span<const std::byte>(tensor.data));
      return;
    }
    // Widen bf16 to f32 in blocks: bf16 is the upper half of an f32.
    constexpr size_t kBlock = 4096;
    std::vector<float> block(kBlock);
    const size_t n = tensor.data.size() / 2;
    for (size_t start = 0; start < n; start += kBlock) {
      const size_t count = std::min(kBlock, n - start);
      for (size_t i = 0; i < count; ++i) {
        bf16 h;
        std::memcpy(&h.bits, tensor.data.data() + 2 * (start + i), 2);
        block[i] = static_cast<float>(h);
      }
      sink.write(block.data(), count * sizeof(float));
    }
  });
}

}  // namespace heed::io

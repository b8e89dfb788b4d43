// ONNX's own conformance cases for its Attention operator (opsets 23-25), run through
// heed::attention. tests/onnx/convert_onnx_cases.py turns the cases of the installed `onnx`
// package into .npy files + case.json in a temporary folder; every case is one test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "heed/heed.h"
#include "heed/io/npy.h"
#include "heed/ops/attention.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- finding (and converting, once) the cases ----

constexpr const char* kSuite = "OnnxAttention/Conformance.Case/";

// Does one gtest filter pattern ('*' and '?' wildcards) match `name`?
bool glob_match(const char* pattern, const char* name) {
  if (*pattern == '\0') return *name == '\0';
  if (*pattern == '*') return glob_match(pattern + 1, name) || (*name != '\0' && glob_match(pattern, name + 1));
  if (*name == '\0') return false;
  return (*pattern == '?' || *pattern == *name) && glob_match(pattern + 1, name + 1);
}

// Could the --gtest_filter select an ONNX case? Checked before converting anything, so that
// runs of other tests (CTest runs each test in its own process) never start Python.
bool filter_may_select_cases() {
  const std::string filter = GTEST_FLAG_GET(filter);
  const std::string positive = filter.substr(0, filter.find('-'));
  if (positive.empty()) return true;
  std::stringstream patterns(positive);
  std::string pattern;
  while (std::getline(patterns, pattern, ':')) {
    // Compare the pattern's literal prefix with the case names' common prefix.
    const std::string literal = pattern.substr(0, pattern.find_first_of("*?"));
    const std::string prefix = std::string(kSuite) + "test_attention_";
    if (prefix.compare(0, literal.size(), literal) == 0 || literal.compare(0, prefix.size(), prefix) == 0)
      return true;
    if (glob_match(pattern.c_str(), "OnnxAttentionConverter.Runs")) return true;
  }
  return false;
}

struct CaseSet {
  fs::path dir;
  std::vector<std::string> names;
  std::string skip;   // why the cases cannot run here (python3 cannot import onnx)
  std::string error;  // the converter failed
};

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void read_index(CaseSet& set) {
  json index = json::parse(read_text(set.dir / "index.json"));
  for (const json& c : index.at("cases")) set.names.push_back(c.at("name").get<std::string>());
}

// Converts the cases into a temporary folder named after the converter's hash and reuses it
// from then on (the first test process pays for the conversion, about ten seconds).
CaseSet discover_cases() {
  CaseSet set;
  const fs::path script = fs::path(HEED_SOURCE_DIR) / "tests" / "onnx" / "convert_onnx_cases.py";
  if (!fs::exists(script)) {
    set.error = "converter " + script.string() + " not found";
    return set;
  }
  std::ostringstream key;
  key << std::hex << fnv1a(read_text(script));
  set.dir = fs::temp_directory_path() / ("heed-onnx-attention-" + key.str());
  if (fs::exists(set.dir / "index.json")) {
    read_index(set);
    return set;
  }
  if (std::system("python3 -c 'import onnx' > /dev/null 2>&1") != 0) {
    set.skip = "python3 cannot import onnx (pip install onnx to run ONNX's Attention conformance cases)";
    return set;
  }
  const fs::path scratch = set.dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const std::string log = (scratch / "convert.log").string();
  const std::string command = "python3 '" + script.string() + "' '" + scratch.string() + "' > '" + log + "' 2>&1";
  if (std::system(command.c_str()) != 0) {
    set.error = "converter failed: " + command + "\n" + read_text(log);
    return set;
  }
  std::error_code ec;
  fs::rename(scratch, set.dir, ec);  // atomic; another process may have won the race
  if (ec) fs::remove_all(scratch);
  read_index(set);
  return set;
}

const CaseSet& cases() {
  static const CaseSet set = filter_may_select_cases() ? discover_cases() : CaseSet{};
  return set;
}

TEST(OnnxAttentionConverter, Runs) {
  const CaseSet& set = cases();
  if (!set.skip.empty()) GTEST_SKIP() << set.skip;
  ASSERT_TRUE(set.error.empty()) << set.error;
  EXPECT_GT(set.names.size(), 0u) << "no test_attention_* case in " << set.dir;
  for (const std::string& name : set.names) EXPECT_TRUE(fs::exists(set.dir / name / "case.json")) << name;
}

// ---- one case ----

Tensor to_tensor(const io::RawTensor& raw) {
  Tensor t = Tensor::empty(raw.shape, raw.dtype);
  if (!raw.data.empty()) std::memcpy(t.raw_data(), raw.data.data(), raw.data.size());
  return t;
}

struct Slot {
  bool present = false;
  std::string onnx_dtype;
  Tensor value;
};

std::vector<Slot> read_slots(const fs::path& dir, const json& table) {
  std::vector<Slot> slots;
  for (const json& entry : table) {
    Slot s;
    s.present = entry.at("present").get<bool>();
    if (s.present) {
      s.onnx_dtype = entry.at("onnx_dtype").get<std::string>();
      s.value = to_tensor(io::read_npy(dir / entry.at("file").get<std::string>()));
    }
    slots.push_back(s);
  }
  return slots;
}

std::optional<double> attribute(const json& attrs, const char* name) {
  if (!attrs.contains(name) || attrs.at(name).is_null()) return std::nullopt;
  return attrs.at(name).get<double>();
}

// [B, N, H*D] -> [B, H, N, D]
Tensor split_heads(const Tensor& x, int64_t heads) {
  return permute(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}), {0, 2, 1, 3});
}

// Pads the last dimension of a mask to `s` keys with `value` (ONNX: a shorter attn_mask
// leaves the trailing keys masked).
Tensor pad_keys(const Tensor& mask, int64_t s, double value) {
  const int64_t have = mask.size(-1);
  if (have == s) return mask;
  Shape shape = mask.shape();
  shape.back() = s;
  Tensor out = Tensor::full(shape, value, mask.dtype());
  out.raw_slice(-1, 0, have).copy_from(mask);
  return out;
}

// The mask's slice for batch item b (masks broadcast right-aligned; only a rank-4 mask has B).
Tensor batch_item(const Tensor& mask, int64_t b) {
  if (!mask.defined() || mask.dim() < 4 || mask.size(0) == 1) return mask;
  return mask.raw_slice(0, b, b + 1);
}

struct CaseResult {
  Tensor y, present_key, present_value, qk;
};

// Runs one ONNX Attention node through heed: 3-d inputs split into heads with
// q_num_heads/kv_num_heads, the past cache concatenated in front of K and V, attn_mask
// (bool: nonzero = attend; float: added) padded to the full key length, is_causal and the
// sliding window anchored at the cache offset (past length, or nonpad_kv_seqlen[b] - T per
// batch item), scale, softcap, and qk_matmul_output for modes 0-3.
CaseResult run_case(const json& c, std::vector<Slot>& in, DType compute) {
  const json& attrs = c.at("effective_attributes");
  auto as_compute = [&](const Tensor& t) { return t.to(compute); };
  Tensor q = as_compute(in[0].value), k = as_compute(in[1].value), v = as_compute(in[2].value);
  const bool three_d = q.dim() == 3;
  if (three_d) {
    const auto hq = attribute(attrs, "q_num_heads"), hkv = attribute(attrs, "kv_num_heads");
    HEED_CHECK(hq && hkv, "onnx case: 3-d inputs without q_num_heads/kv_num_heads");
    q = split_heads(q, static_cast<int64_t>(*hq));   // [B, T, Hq*D] -> [B, Hq, T, D]
    k = split_heads(k, static_cast<int64_t>(*hkv));  // [B, S, Hkv*D] -> [B, Hkv, S, D]
    v = split_heads(v, static_cast<int64_t>(*hkv));  // [B, S, Hkv*Dv] -> [B, Hkv, S, Dv]
  }
  int64_t past = 0;
  if (in.size() > 4 && in[4].present) {
    past = in[4].value.size(2);
    k = concat({as_compute(in[4].value), k}, 2);  // [B, Hkv, P + S, D]
    v = concat({as_compute(in[5].value), v}, 2);  // [B, Hkv, P + S, Dv]
  }
  const int64_t nb = q.size(0), t_len = q.size(2), s_len = k.size(2);

  AttentionOptions o;
  o.scale = attribute(attrs, "scale");
  o.softcap = attribute(attrs, "softcap").value_or(0.0);
  const int mode = static_cast<int>(attribute(attrs, "qk_matmul_output_mode").value_or(0));
  const bool want_qk = c.at("outputs").size() > 3 && c.at("outputs")[3].at("present").get<bool>();
  o.need_weights = want_qk && mode == 3;
  o.need_scores = want_qk && mode != 3;
  AttentionMask& m = o.mask;
  m.causal = attribute(attrs, "is_causal").value_or(0) != 0;
  m.window_left = static_cast<int64_t>(attribute(attrs, "left_window_size").value_or(-1));
  m.window_right = static_cast<int64_t>(attribute(attrs, "right_window_size").value_or(-1));
  m.causal_offset = past;
  if (in.size() > 3 && in[3].present) {
    if (in[3].onnx_dtype == "bool") m.bool_mask = pad_keys(in[3].value, s_len, 0.0);
    else m.additive_mask = pad_keys(as_compute(in[3].value), s_len, -std::numeric_limits<double>::infinity());
  }

  // nonpad_kv_seqlen gives every batch item its own key length and its own causal/window
  // anchor nonpad[b] - T, so those cases run one batch item at a time.
  std::vector<int64_t> nonpad;
  if (in.size() > 6 && in[6].present) nonpad = in[6].value.to_vector<int64_t>();
  std::vector<Tensor> ys, qks;
  const int64_t items = nonpad.empty() ? 1 : nb;
  for (int64_t b = 0; b < items; ++b) {
    AttentionOptions ob = o;
    Tensor qb = q, kb = k, vb = v;
    if (!nonpad.empty()) {
      qb = slice(q, 0, b, b + 1);  // [1, Hq, T, D]
      kb = slice(k, 0, b, b + 1);  // [1, Hkv, S, D]
      vb = slice(v, 0, b, b + 1);  // [1, Hkv, S, Dv]
      ob.mask.bool_mask = batch_item(m.bool_mask, b);
      ob.mask.additive_mask = batch_item(m.additive_mask, b);
      ob.mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{nonpad[b]}, {1});
      ob.mask.causal_offset = nonpad[b] - t_len;
    }
    AttentionResult r = attention(qb, kb, vb, ob);
    ys.push_back(r.out);
    if (mode == 3) qks.push_back(r.weights);
    else if (want_qk && mode == 2) {
      const AttentionDims dims{qb.size(0), qb.size(1), t_len, s_len};
      Tensor bias = attention_bias(ob.mask, dims, compute, "onnx qk_matmul_output");
      qks.push_back(bias.defined() ? add(r.scores, bias) : r.scores);  // [1|B, Hq, T, S]
    } else if (want_qk) {
      qks.push_back(r.scores);  // modes 0 and 1: the (softcapped) scores before any mask
    }
  }
  CaseResult out;
  out.y = concat(ys, 0);  // [B, Hq, T, Dv]
  if (three_d)
    out.y = reshape(permute(out.y, {0, 2, 1, 3}), {nb, t_len, -1});  // [B, Hq, T, Dv] -> [B, T, Hq*Dv]
  if (want_qk) out.qk = concat(qks, 0);  // [B, Hq, T, S]
  out.present_key = k;
  out.present_value = v;
  return out;
}

// Golden outputs of float32 cases: the tolerance STYLE.md sets against outside references.
// float16/bfloat16 cases are widened exactly to float32 and run there; their golden outputs
// were computed in that low precision, so they are checked at the format's own resolution.
testing::Tol tolerance_for(const std::string& onnx_dtype) {
  if (onnx_dtype == "float16") return {9.8e-4, 9.8e-4};  // 1 ulp at 1.0 (2^-10); seen: 5.1e-4
  if (onnx_dtype == "bfloat16") return {7.8e-3, 7.8e-3};  // 1 ulp at 1.0 (2^-7); seen: 5.0e-3
  return testing::kGolden;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, Case) {
  const CaseSet& set = cases();
  const fs::path dir = set.dir / GetParam();
  const json c = json::parse(read_text(dir / "case.json"));
  std::vector<Slot> inputs = read_slots(dir, c.at("inputs"));
  std::vector<Slot> expected = read_slots(dir, c.at("outputs"));
  const json& attrs = c.at("effective_attributes");
  // softmax_precision = 11 asks for double-precision softmax: heed then runs the whole case in f64.
  const DType compute = attribute(attrs, "softmax_precision").value_or(1) == 11 ? DType::kF64 : DType::kF32;
  CaseResult got = run_case(c, inputs, compute);
  const testing::Tol tol = tolerance_for(inputs[0].onnx_dtype);
  const Tensor* actual[] = {&got.y, &got.present_key, &got.present_value, &got.qk};
  const char* names[] = {"Y", "present_key", "present_value", "qk_matmul_output"};
  int compared = 0;
  for (size_t i = 0; i < expected.size() && i < 4; ++i) {
    if (!expected[i].present) continue;
    ASSERT_TRUE(actual[i]->defined()) << names[i] << " not produced";
    Tensor want = expected[i].value;
    EXPECT_TRUE(testing::all_close(actual[i]->to(DType::kF32), want, tol)) << names[i];
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

std::vector<std::string> case_names() { return cases().names; }

INSTANTIATE_TEST_SUITE_P(OnnxAttention, Conformance, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Conformance);

}  // namespace
}  // namespace heed

// Runs tests/onnx/convert_onnx_cases.py on a few ONNX Attention conformance cases (when the
// `onnx` Python package is installed) and reads every file it writes with heed's NPY reader;
// three simple cases are recomputed in double to check that the data survived intact.

#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include <gtest/gtest.h>

#include "heed/io/npy.h"
#include "tests/io/io_test_support.h"

namespace heed::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using test_support::python_has;
using test_support::read_bytes;
using test_support::TempDir;

const std::vector<std::string> kCases = {
    "test_attention_4d",
    "test_attention_4d_gqa",
    "test_attention_4d_attn_mask_bool",
    "test_attention_4d_fp16",
    "test_attention_4d_causal_bf16",
    "test_attention_4d_diff_heads_mask4d_padded_kv",
    "test_attention_3d_with_past_and_present_qk_matmul",
    "test_attention_4d_gqa_with_past_and_present_fp16",
};

std::vector<double> as_double(const RawTensor& t) {
  std::vector<double> out;
  if (t.dtype == DType::kF32) {
    for (float v : raw_tensor_values<float>(t)) out.push_back(v);
  } else if (t.dtype == DType::kF64) {
    out = raw_tensor_values<double>(t);
  } else if (t.dtype == DType::kU8) {
    for (uint8_t v : raw_tensor_values<uint8_t>(t)) out.push_back(v);
  } else {
    ADD_FAILURE() << "unexpected dtype " << dtype_name(t.dtype);
  }
  return out;
}

// softmax(Q K^T / sqrt(D) + mask) V in double for 4-D Q [B, Hq, T, D], K [B, Hkv, S, D],
// V [B, Hkv, S, Dv]; an optional bool mask broadcasts right-aligned to [B, Hq, T, S].
std::vector<double> reference_attention(const RawTensor& q, const RawTensor& k, const RawTensor& v,
                                        const RawTensor* mask) {
  const int64_t B = q.shape[0], Hq = q.shape[1], T = q.shape[2], D = q.shape[3];
  const int64_t Hkv = k.shape[1], S = k.shape[2], Dv = v.shape[3];
  const std::vector<double> qd = as_double(q), kd = as_double(k), vd = as_double(v);
  std::vector<double> md;
  std::vector<int64_t> mshape(4, 1);
  if (mask) {
    md = as_double(*mask);
    const size_t r = mask->shape.size();
    for (size_t i = 0; i < r; ++i) mshape[4 - r + i] = mask->shape[i];
  }
  auto mask_at = [&](int64_t b, int64_t h, int64_t t, int64_t s) {
    const int64_t idx[4] = {b, h, t, s};
    int64_t flat = 0;
    for (int i = 0; i < 4; ++i) flat = flat * mshape[i] + (mshape[i] == 1 ? 0 : idx[i]);
    return md[flat] != 0.0;
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> y(B * Hq * T * Dv, 0.0), p(S);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / (Hq / Hkv);  // grouped heads share a kv head
      for (int64_t t = 0; t < T; ++t) {
        double mx = -INFINITY;
        for (int64_t s = 0; s < S; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot += qd[((b * Hq + h) * T + t) * D + d] * kd[((b * Hkv + hk) * S + s) * D + d];
          }
          p[s] = mask && !mask_at(b, h, t, s) ? -INFINITY : dot * scale;
          mx = std::max(mx, p[s]);
        }
        double sum = 0;
        for (int64_t s = 0; s < S; ++s) sum += p[s] = std::isinf(p[s]) ? 0.0 : std::exp(p[s] - mx);
        for (int64_t s = 0; s < S; ++s)
          for (int64_t d = 0; d < Dv; ++d) {
            y[((b * Hq + h) * T + t) * Dv + d] += p[s] / sum * vd[((b * Hkv + hk) * S + s) * Dv + d];
          }
      }
    }
  return y;
}

TEST(OnnxCases, ConverterOutputReadsBackAndMatchesAttention) {
  if (!python_has("onnx, numpy")) GTEST_SKIP() << "python3 with onnx and numpy not found";
  TempDir dir;
  std::string list;
  for (const auto& c : kCases) list += (list.empty() ? "" : ",") + c;
  const std::string script = std::string(HEED_SOURCE_DIR) + "/tests/onnx/convert_onnx_cases.py";
  const fs::path log = dir.path() / "convert.log";
  const std::string cmd = "python3 '" + script + "' '" + dir.path().string() + "' --cases " + list +
                          " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << cmd << "\n" << read_bytes(log);

  for (const auto& name : kCases) {
    SCOPED_TRACE(name);
    const fs::path case_dir = dir.path() / name;
    ASSERT_TRUE(fs::exists(case_dir / "case.json")) << "no case.json";
    const Json c = Json::parse(read_bytes(case_dir / "case.json"));
    EXPECT_EQ(c["name"], name);
    std::map<std::string, RawTensor> tensors;
    int files = 0;
    for (const char* kind : {"inputs", "outputs"}) {
      for (const Json& e : c[kind]) {
        if (!e["present"].get<bool>()) continue;
        const NpyArray a = read_npy_array(case_dir / e["file"].get<std::string>());
        ++files;
        EXPECT_EQ(a.tensor.shape, e["shape"].get<std::vector<int64_t>>()) << e["file"];
        const std::string onnx_dtype = e["onnx_dtype"];
        if (onnx_dtype == "bool") {
          EXPECT_TRUE(a.is_bool);
          EXPECT_EQ(a.tensor.dtype, DType::kU8);
        } else if (onnx_dtype == "int64") {
          EXPECT_EQ(a.tensor.dtype, DType::kI64);
        } else {
          // float32, and float16 / bfloat16 widened to float32 by the converter.
          EXPECT_EQ(a.descr, "<f4") << onnx_dtype;
          EXPECT_EQ(a.tensor.dtype, DType::kF32);
        }
        tensors[std::string(kind) + "." + e["formal_name"].get<std::string>()] = a.tensor;
      }
    }
    EXPECT_GE(files, 4);
    if (name == "test_attention_4d" || name == "test_attention_4d_gqa" ||
        name == "test_attention_4d_attn_mask_bool") {
      const RawTensor* mask = tensors.count("inputs.attn_mask") ? &tensors.at("inputs.attn_mask") : nullptr;
      EXPECT_EQ(mask != nullptr, name == "test_attention_4d_attn_mask_bool");
      const std::vector<double> want = reference_attention(tensors.at("inputs.Q"), tensors.at("inputs.K"),
                                                           tensors.at("inputs.V"), mask);
      const std::vector<double> got = as_double(tensors.at("outputs.Y"));
      ASSERT_EQ(got.size(), want.size());
      size_t worst = 0;
      double worst_excess = -1;
      for (size_t i = 0; i < got.size(); ++i) {
        const double excess = std::abs(got[i] - want[i]) - (1e-5 + 1e-4 * std::abs(want[i]));
        if (excess > worst_excess) worst_excess = excess, worst = i;
      }
      EXPECT_LE(worst_excess, 0.0) << "worst index " << worst << ": file " << got[worst] << ", reference "
                                   << want[worst];
    }
  }
}

}  // namespace
}  // namespace heed::io

// Tensor <-> safetensors conversion and module load/save.
#include "heed/train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "heed/autograd/graph.h"
#include "heed/io/atomic_file.h"
#include "heed/io/safetensors.h"

namespace heed::train {

namespace {

io::RawTensor to_raw(const Tensor& t) {
  Tensor c = t.raw_contiguous();
  io::RawTensor r;
  r.dtype = c.dtype();
  r.shape = c.shape();
  r.data.resize(c.numel() * dtype_size(c.dtype()));
  if (!r.data.empty()) std::memcpy(r.data.data(), c.raw_data(), r.data.size());
  return r;
}

Tensor from_raw(const io::RawTensor& r) {
  Tensor t = Tensor::empty(r.shape, r.dtype);
  if (!r.data.empty()) std::memcpy(t.raw_data(), r.data.data(), r.data.size());
  return t;
}

}  // namespace

void save_tensors(const std::filesystem::path& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::map<std::string, io::RawTensor> raw;
  for (const auto& [name, t] : tensors) {
    HEED_CHECK(!raw.count(name), "save_tensors: ", path.string(), ": tensor name '", name, "' given twice");
    raw.emplace(name, to_raw(t));
  }
  io::write_safetensors(path, raw, metadata);
}

NamedTensors load_tensors(const std::filesystem::path& path, std::map<std::string, std::string>* metadata) {
  io::SafetensorsFile file = io::read_safetensors(path);
  NamedTensors out;
  for (const auto& [name, raw] : file.tensors) out.emplace_back(name, from_raw(raw));
  if (metadata != nullptr) *metadata = std::move(file.metadata);
  return out;
}

void save_module(const std::filesystem::path& path, const nn::Module& module,
                 const std::map<std::string, std::string>& metadata) {
  save_tensors(path, module.named_parameters(), metadata);
}

namespace {

// What must agree for two checkpoints to be averaged: a G2P checkpoint's model options and
// vocabularies (its training-loop settings may differ, e.g. after a resume with a later
// max_epochs); any other config.json as a whole.
nlohmann::json averaging_identity(const std::string& text, const std::filesystem::path& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("average: ", file.string(), " is not valid JSON (", e.what(), ")");
  }
  if (j.is_object() && j.contains("model") && j.contains("vocabs")) {
    nlohmann::json model = j["model"];
    // Written before session 11 without the key: such a model reads left to right.
    if (model.is_object() && !model.contains("reverse_target")) model["reverse_target"] = false;
    return nlohmann::json{{"model", model}, {"vocabs", j["vocabs"]}};
  }
  return j;
}

}  // namespace

void average_checkpoints(const std::vector<std::filesystem::path>& dirs, const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  HEED_CHECK(!dirs.empty(), "average: no checkpoints given");
  for (size_t i = 0; i < dirs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      HEED_CHECK(fs::weakly_canonical(dirs[i]) != fs::weakly_canonical(dirs[j]), "average: ", dirs[i].string(),
                 " is given twice");
  const CheckpointPaths first{dirs.front()};
  const std::string config = read_text_file(first.config());
  const nlohmann::json identity = averaging_identity(config, first.config());
  std::map<std::string, std::string> meta;
  NamedTensors sum = load_tensors(first.model(), &meta);
  std::vector<DType> dtypes;
  for (auto& [name, t] : sum) {
    dtypes.push_back(t.dtype());
    t = t.to(DType::kF64);
  }
  for (size_t i = 1; i < dirs.size(); ++i) {
    const CheckpointPaths cp{dirs[i]};
    HEED_CHECK(averaging_identity(read_text_file(cp.config()), cp.config()) == identity, "average: the model in ",
               cp.config().string(), " differs from the one in ", first.config().string(),
               "; only checkpoints of one model configuration and vocabulary can be averaged");
    NamedTensors next = load_tensors(cp.model());
    for (size_t j = 0; j < std::max(next.size(), sum.size()); ++j) {  // both sorted by name
      HEED_CHECK(j < next.size(), "average: ", cp.model().string(), " has no tensor '", sum[j].first, "'");
      HEED_CHECK(j < sum.size(), "average: ", cp.model().string(), " has a tensor '", next[j].first,
                 "' that ", first.model().string(), " does not have");
      const auto& [name, t] = next[j];
      HEED_CHECK(name == sum[j].first, "average: ", cp.model().string(), " has tensor '", name, "' where ",
                 first.model().string(), " has '", sum[j].first, "'");
      HEED_CHECK(t.shape() == sum[j].second.shape() && t.dtype() == dtypes[j], "average: ", cp.model().string(),
                 ": '", name, "' is ", dtype_name(t.dtype()), " ", shape_str(t.shape()), ", in ",
                 first.model().string(), " it is ", dtype_name(dtypes[j]), " ", shape_str(sum[j].second.shape()));
      const Tensor d = t.to(DType::kF64);
      double* acc = sum[j].second.data<double>();
      const double* x = d.data<double>();
      for (int64_t e = 0; e < t.numel(); ++e) acc[e] += x[e];
    }
  }
  const double n = static_cast<double>(dirs.size());
  for (size_t j = 0; j < sum.size(); ++j) {
    double* acc = sum[j].second.data<double>();
    for (int64_t e = 0; e < sum[j].second.numel(); ++e) acc[e] /= n;
    sum[j].second = sum[j].second.to(dtypes[j]);
  }
  // Written beside `out` and renamed into place: an existing `out` (with --overwrite) is
  // replaced whole, never left holding another checkpoint's optimizer or trainer state.
  const fs::path tmp = out.string() + ".partial";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const CheckpointPaths target{tmp};
  meta["averaged_from"] = std::to_string(dirs.size()) + " checkpoints";
  save_tensors(target.model(), sum, meta);
  write_text_atomically(target.config(), config);
  fs::remove_all(out);
  fs::rename(tmp, out);
}

void load_module(const std::filesystem::path& path, nn::Module& module) {
  NamedTensors file = load_tensors(path);
  std::set<std::string> used;
  autograd::NoGradGuard no_grad;
  for (auto& [name, param] : module.named_parameters()) {
    const Tensor* found = nullptr;
    for (const auto& [n, t] : file)
      if (n == name) found = &t;
    HEED_CHECK(found != nullptr, "load_module: ", path.string(), " has no tensor '", name,
               "' (a checkpoint of another model configuration?)");
    HEED_CHECK(found->shape() == param.shape(), "load_module: ", path.string(), ": '", name, "' is ",
               shape_str(found->shape()), ", the model expects ", shape_str(param.shape()));
    Tensor p = param;
    p.copy_from(*found);
    used.insert(name);
  }
  for (const auto& [n, t] : file)
    HEED_CHECK(used.count(n), "load_module: ", path.string(), " has a tensor '", n, "' that the model does not have");
}

void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
  io::write_file_atomically(path, [&](io::FileSink& sink) { sink.write(text); });
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  HEED_CHECK(in.good(), "read_text_file: cannot open ", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  HEED_CHECK(!in.bad(), "read_text_file: error reading ", path.string());
  return ss.str();
}

}  // namespace heed::train

// Tensor <-> safetensors conversion and module load/save.
#include "heed/train/checkpoint.h"

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

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

void average_checkpoints(const std::vector<std::filesystem::path>& dirs, const std::filesystem::path& out) {
  HEED_CHECK(!dirs.empty(), "average: no checkpoints given");
  const CheckpointPaths first{dirs.front()};
  const std::string config = read_text_file(first.config());
  std::map<std::string, std::string> meta;
  NamedTensors sum = load_tensors(first.model(), &meta);
  std::vector<DType> dtypes;
  for (auto& [name, t] : sum) {
    dtypes.push_back(t.dtype());
    t = t.to(DType::kF64);
  }
  for (size_t i = 1; i < dirs.size(); ++i) {
    const CheckpointPaths cp{dirs[i]};
    HEED_CHECK(read_text_file(cp.config()) == config, "average: ", cp.config().string(), " differs from ",
               first.config().string(), "; only checkpoints of one model configuration can be averaged");
    NamedTensors next = load_tensors(cp.model());
    HEED_CHECK(next.size() == sum.size(), "average: ", cp.model().string(), " has ", next.size(), " tensors, ",
               first.model().string(), " has ", sum.size());
    for (size_t j = 0; j < sum.size(); ++j) {
      const auto& [name, t] = next[j];  // both sorted by name
      HEED_CHECK(name == sum[j].first, "average: ", cp.model().string(), " has tensor '", name, "' where ",
                 first.model().string(), " has '", sum[j].first, "'");
      HEED_CHECK(t.shape() == sum[j].second.shape(), "average: ", cp.model().string(), ": '", name, "' is ",
                 shape_str(t.shape()), ", in ", first.model().string(), " it is ", shape_str(sum[j].second.shape()));
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
  const CheckpointPaths target{out};
  std::filesystem::create_directories(out);
  meta["averaged_from"] = std::to_string(dirs.size()) + " checkpoints";
  save_tensors(target.model(), sum, meta);
  write_text_atomically(target.config(), config);
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

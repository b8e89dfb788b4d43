// Checkpoints: named tensors (model weights, optimiser state) <-> safetensors files, each
// written atomically, and the layout of a checkpoint directory.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "heed/nn/module.h"
#include "heed/train/optimizer.h"

namespace heed::train {

// Writes `tensors` (contiguous copies, in their own dtypes) to a safetensors file, atomically.
void save_tensors(const std::filesystem::path& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of a safetensors file (names sorted), and its metadata when asked.
NamedTensors load_tensors(const std::filesystem::path& path, std::map<std::string, std::string>* metadata = nullptr);

// The module's parameters, by their dotted names.
void save_module(const std::filesystem::path& path, const nn::Module& module,
                 const std::map<std::string, std::string>& metadata = {});

// Copies a file's tensors into the module's parameters. Throws heed::Error naming the file
// and the parameter when one is missing, has another shape, or the file has a tensor the
// module lacks. Values are converted to the parameter's dtype.
void load_module(const std::filesystem::path& path, nn::Module& module);

// Files of a checkpoint directory.
struct CheckpointPaths {
  std::filesystem::path dir;
  std::filesystem::path model() const { return dir / "model.safetensors"; }
  std::filesystem::path config() const { return dir / "config.json"; }       // model config + vocabularies
  std::filesystem::path optimizer() const { return dir / "optimizer.safetensors"; }
  std::filesystem::path trainer() const { return dir / "trainer.json"; }     // step, epoch, ... (written last)
};

// The element-wise mean of the models of checkpoint directories `dirs`, written to `out` as a
// model-only checkpoint (model.safetensors and config.json; no optimizer or trainer state).
// Every checkpoint must have a config.json equal to the first one's and the same tensors
// (names, shapes, dtypes); a difference throws heed::Error naming the directory and the tensor.
// Sums are taken in double in the order given, then converted back to each tensor's dtype.
void average_checkpoints(const std::vector<std::filesystem::path>& dirs, const std::filesystem::path& out);

// Writes `text` to `path` atomically.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);
// Reads a whole text file; throws heed::Error naming it when it cannot.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace heed::train

// An opened packed model directory: config.json, the manifest, dense.bin memory-mapped, and the
// layout of the per-layer expert files (which the expert store reads). Every size and offset is
// checked against the files at open.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "moeflux/format/manifest.h"
#include "moeflux/format/model_layout.h"
#include "moeflux/util/mapped_file.h"

namespace moeflux::format {

class PackedModel {
 public:
  // Throws FormatError (missing/malformed manifest, other version, sizes that disagree with files),
  // ConfigError (missing/malformed config.json) or IoError.
  static std::shared_ptr<const PackedModel> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }  // config.json as written by HF
  const Manifest& manifest() const { return manifest_; }

  bool has_dense(const std::string& name) const;
  // A view into the mapped dense.bin; throws FormatError naming the tensor when it is absent.
  TensorView dense(const std::string& name) const;

  // nullptr when `layer` has no experts.
  const ExpertLayerEntry* expert_layer(int layer) const;
  std::string expert_file_path(const ExpertLayerEntry& entry) const;

  // Checks the packed tensors against what the architecture expects: every required dense tensor
  // present with its shape, every expert layer with its expert count and block shapes. A quantized
  // tensor's shape is its logical [rows, cols], so it is checked like a float one.
  // Throws FormatError naming the file and the tensor.
  void check(const ModelLayout& layout) const;

 private:
  std::string dir_;
  nlohmann::json config_;
  Manifest manifest_;
  util::MappedFile dense_file_;
  std::unordered_map<std::string, std::size_t> dense_index_;
  std::unordered_map<int, std::size_t> expert_index_;
};

// Reads and parses `dir`/config.json; throws ConfigError naming the file when absent or malformed.
nlohmann::json read_config(const std::string& dir);

}  // namespace moeflux::format

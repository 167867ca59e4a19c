// The manifest (moeflux.json) of a packed model, version 1; docs/FORMAT.md is its exact description.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "moeflux/format/tensor_view.h"

namespace moeflux::format {

inline constexpr int kFormatVersion = 1;
inline constexpr std::string_view kFormatName = "moeflux-packed";
inline constexpr std::string_view kManifestFile = "moeflux.json";
inline constexpr std::string_view kDenseFile = "dense.bin";
// Every tensor in dense.bin and every expert record starts on a 4 KiB boundary (O_DIRECT, mmap).
inline constexpr std::uint64_t kFileAlignment = 4096;
// Blocks inside an expert record start on 256 bytes (the largest minStorageBufferOffsetAlignment).
inline constexpr std::uint64_t kBlockAlignment = 256;

struct DenseEntry {
  std::string name;
  Dtype dtype = Dtype::f32;
  Shape shape;
  std::uint64_t offset = 0;  // in dense.bin
  std::uint64_t nbytes = 0;
  int group_size = 0;               // quantized dtypes only
  Dtype scale_dtype = Dtype::bf16;  // quantized dtypes only
};

struct ExpertBlockEntry {
  std::string name;  // gate_proj, up_proj, down_proj
  Dtype dtype = Dtype::f32;
  Shape shape;
  std::uint64_t offset = 0;  // within the expert record
  std::uint64_t nbytes = 0;
  int group_size = 0;               // quantized dtypes only
  Dtype scale_dtype = Dtype::bf16;  // quantized dtypes only
};

struct ExpertLayerEntry {
  int layer = 0;
  std::string file;          // relative to the model directory, e.g. "experts/layer_003.bin"
  int n_experts = 0;
  std::uint64_t stride = 0;  // bytes from one expert record to the next; a multiple of kFileAlignment
  std::vector<ExpertBlockEntry> blocks;

  std::uint64_t file_size() const { return stride * static_cast<std::uint64_t>(n_experts); }
  std::uint64_t record_bytes() const;  // bytes of the record actually used (<= stride)
};

struct Manifest {
  int version = kFormatVersion;
  std::string model_type;  // from config.json, e.g. "qwen3_moe"
  std::uint64_t dense_size = 0;  // size of dense.bin
  std::vector<DenseEntry> dense;
  std::vector<ExpertLayerEntry> expert_layers;  // in layer order

  nlohmann::json to_json() const;
  // Validates structure, version and alignment; throws FormatError naming `path` and the field.
  static Manifest from_json(const nlohmann::json& j, const std::string& path);
  static Manifest read(const std::string& path);
  void write(const std::string& path) const;
};

// Rounds `value` up to a multiple of `alignment` (a power of two).
std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment);

}  // namespace moeflux::format

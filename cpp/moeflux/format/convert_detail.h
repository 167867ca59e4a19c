// Private pieces of the converter (convert*.cpp): the source checkpoint seen through canonical names
// (MLX quantized triples included), how each tensor is stored and encoded, and the plan of one
// expert layer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "moeflux/format/convert.h"
#include "moeflux/format/manifest.h"
#include "moeflux/format/quant.h"
#include "moeflux/format/safetensors.h"

namespace moeflux::format::detail {

// A tensor of the source: float elements, or an MLX-quantized triple. For a triple, `view` has the
// quantized dtype, the logical shape [..., rows, cols], group_size and scale_dtype, and points at the
// packed words; `scales` and `biases` point at the other two sections (the bytes quant.h expects).
struct SourceTensor {
  TensorView view;
  const std::byte* scales = nullptr;
  const std::byte* biases = nullptr;

  QuantSections sections() const { return {view.data, scales, biases}; }
};

// The checkpoint addressed by canonical names; remembers which tensors the layout consumed, and reads
// MLX quantized triples with the "quantization" block of config.json.
class Sources {
 public:
  Sources(const std::string& dir, const nlohmann::json& config);
  const std::string& dir() const { return dir_; }
  bool contains(const std::string& canonical) const { return by_canonical_.count(canonical) != 0; }
  // The tensor as stored, marked as consumed; Unsupported for dtypes we cannot store.
  TensorView take(const std::string& canonical);
  // `canonical` in either form: "X.weight" with "X.scales" and "X.biases" beside it is a quantized
  // triple (checked against config.json and each other), anything else a float tensor (take()).
  SourceTensor take_tensor(const std::string& canonical);
  const std::string& file_of(const std::string& canonical) const;
  std::vector<std::string> ignored() const;  // canonical names never taken, sorted

 private:
  QuantParams mlx_params(const std::string& canonical_module) const;
  std::string dir_;
  SafetensorsCheckpoint checkpoint_;
  nlohmann::json quantization_;  // the config's "quantization" block; null when it has none
  std::map<std::string, std::string> by_canonical_;  // canonical -> name in the checkpoint
  std::set<std::string> taken_;
};

// How a tensor is stored: its dtype and, for quantized dtypes, group size and scale dtype.
struct StoredType {
  Dtype dtype = Dtype::f32;
  QuantParams quant;
};

// Chooses how to store `source`: quantized with the requested `bits` when `quantizable`; else a
// quantized source as it is (a router or other tensor that may not be quantized is dequantized to
// options.dtype, f32 when unset); else a float source in options.dtype, or its own dtype.
StoredType stored_type(const TensorView& source, bool quantizable, std::optional<int> bits,
                       const ConvertOptions& options);
// Bytes of `source` stored as `type` (its logical shape).
std::uint64_t stored_size(const SourceTensor& source, const StoredType& type);
// Writes `source` stored as `type` to dst (stored_size bytes): a plain copy when nothing changes (an
// MLX triple's sections included), otherwise through f32 a slice of rows at a time.
void encode_tensor(const SourceTensor& source, const StoredType& type, std::byte* dst,
                   std::vector<float>& scratch);

// Converts `count` elements from `src_dtype` to `dst_dtype` (a plain copy when they agree).
void convert_elements(const std::byte* src, Dtype src_dtype, std::size_t count, Dtype dst_dtype,
                      std::byte* dst);

// Reports bytes written after each tensor and expert record.
class ProgressReporter {
 public:
  ProgressReporter(const std::function<void(const ConvertProgress&)>& callback, std::uint64_t total);
  void advance(std::uint64_t bytes, const std::string& current);

 private:
  const std::function<void(const ConvertProgress&)>& callback_;
  ConvertProgress progress_;
};

// Where each expert's block comes from: one tensor per expert, or a slice of a stacked tensor
// ([E, ...] float or MLX triple, or the fused gate_up_proj [E, 2I, H] whose gate rows come first).
struct BlockSource {
  std::vector<SourceTensor> per_expert;
  SourceTensor first;                // stacked: expert 0's slice, with the block's shape
  std::uint64_t data_stride = 0;     // stacked: bytes from one expert's slice of `data` to the next
  std::uint64_t section_stride = 0;  // stacked triples: the same for scales and biases

  SourceTensor of(int expert) const;
};

struct ExpertLayerPlan {
  ExpertLayerEntry entry;
  std::vector<BlockSource> sources;  // one per block, in entry.blocks order
};

// Finds and checks every expert tensor of `spec` and chooses how to store each block; nothing is written.
ExpertLayerPlan plan_expert_layer(const ExpertLayerSpec& spec, Sources& sources,
                                  const ConvertOptions& options);
// Writes dst_dir/plan.entry.file, one record of plan.entry.stride bytes per expert.
void write_expert_layer(const ExpertLayerPlan& plan, const std::string& dst_dir, ProgressReporter& progress);

}  // namespace moeflux::format::detail

// Private pieces of the converter (convert.cpp, convert_experts.cpp): the source checkpoint seen
// through canonical names, dtype conversion of raw elements, and the plan of one expert layer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "moeflux/format/convert.h"
#include "moeflux/format/manifest.h"
#include "moeflux/format/safetensors.h"

namespace moeflux::format::detail {

// The checkpoint addressed by canonical names; remembers which tensors the layout consumed.
class Sources {
 public:
  explicit Sources(const std::string& dir);
  const std::string& dir() const { return dir_; }
  bool contains(const std::string& canonical) const { return by_canonical_.count(canonical) != 0; }
  // The tensor as stored, marked as consumed; Unsupported for dtypes we cannot store.
  TensorView take(const std::string& canonical);
  const std::string& file_of(const std::string& canonical) const;
  std::vector<std::string> ignored() const;  // canonical names never taken, sorted

 private:
  std::string dir_;
  SafetensorsCheckpoint checkpoint_;
  std::map<std::string, std::string> by_canonical_;  // canonical -> name in the checkpoint
  std::set<std::string> taken_;
};

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
// ([E, ...], or the fused gate_up_proj [E, 2I, H] whose gate rows come first).
struct BlockSource {
  std::vector<TensorView> per_expert;
  TensorView stacked;
  std::uint64_t expert_elems = 0;  // elements per expert in `stacked`
  std::uint64_t first_elem = 0;    // where this block starts inside an expert of `stacked`

  Dtype dtype() const { return per_expert.empty() ? stacked.dtype : per_expert.front().dtype; }
  Dtype dtype_of(int expert) const;
  const std::byte* data_of(int expert) const;
};

struct ExpertLayerPlan {
  ExpertLayerEntry entry;
  std::vector<BlockSource> sources;  // one per block, in entry.blocks order
};

// Finds and checks every expert tensor of `spec`; nothing is written.
ExpertLayerPlan plan_expert_layer(const ExpertLayerSpec& spec, Sources& sources, std::optional<Dtype> dtype);
// Writes dst_dir/plan.entry.file, one record of plan.entry.stride bytes per expert.
void write_expert_layer(const ExpertLayerPlan& plan, const std::string& dst_dir, ProgressReporter& progress);

}  // namespace moeflux::format::detail

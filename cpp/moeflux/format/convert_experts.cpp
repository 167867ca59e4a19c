// The converter's expert half: finding every expert's gate/up/down tensors in any accepted source
// form, checking their shapes, and writing one record per expert at a fixed 4 KiB-aligned stride.
#include <algorithm>
#include <cstdio>

#include "moeflux/format/convert_detail.h"
#include "moeflux/format/detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format::detail {

namespace {

constexpr std::string_view kFixShapes =
    "the checkpoint and its config.json disagree; use the config.json that came with the checkpoint";

// Mixtral-style checkpoints name the expert projections w1 (gate), w3 (up) and w2 (down).
std::string alias_of(const std::string& block) {
  if (block == "gate_proj") return "w1";
  if (block == "up_proj") return "w3";
  if (block == "down_proj") return "w2";
  return {};
}

void check_shape(const TensorView& view, const Shape& expected, const Sources& sources,
                 const std::string& canonical, const std::string& meaning) {
  MF_CHECK(view.shape == expected, FormatError, "[convert] tensor ", view.name, " in ",
           sources.file_of(canonical), " has shape ", shape_string(view.shape), " but config.json implies ",
           shape_string(expected), " (", meaning, "); ", kFixShapes);
}

BlockSource resolve_block(const ExpertLayerSpec& spec, const ExpertBlockSpec& block, Sources& sources) {
  const auto n_experts = static_cast<std::int64_t>(spec.n_experts);
  const std::int64_t block_elems = element_count(block.shape);
  BlockSource source;
  const std::string fused = spec.hf_prefix + ".gate_up_proj";
  const bool gate_or_up = block.name == "gate_proj" || block.name == "up_proj";
  if (gate_or_up && sources.contains(fused)) {
    MF_CHECK(!block.shape.empty(), ConfigError, "[convert] expert block ", block.name, " of ", spec.hf_prefix,
             " has a scalar shape; fix the layout built from config.json");
    Shape expected = block.shape;
    expected[0] *= 2;
    expected.insert(expected.begin(), n_experts);
    source.stacked = sources.take(fused);
    check_shape(
        source.stacked, expected, sources, fused,
        util::concat(spec.n_experts, " experts of gate and up rows ", shape_string(block.shape), " each"));
    source.expert_elems = static_cast<std::uint64_t>(2 * block_elems);
    source.first_elem = block.name == "up_proj" ? static_cast<std::uint64_t>(block_elems) : 0;
    return source;
  }
  const std::string stacked = spec.hf_prefix + "." + block.name;
  if (sources.contains(stacked)) {
    Shape expected = block.shape;
    expected.insert(expected.begin(), n_experts);
    source.stacked = sources.take(stacked);
    check_shape(source.stacked, expected, sources, stacked,
                util::concat(spec.n_experts, " experts of ", block.name, " ", shape_string(block.shape)));
    source.expert_elems = static_cast<std::uint64_t>(block_elems);
    return source;
  }
  for (int e = 0; e < spec.n_experts; ++e) {
    const std::string base = util::concat(spec.hf_prefix, ".", e, ".");
    std::string name = base + block.name + ".weight";
    const std::string alias = alias_of(block.name);
    if (!sources.contains(name) && !alias.empty() && sources.contains(base + alias + ".weight")) {
      name = base + alias + ".weight";
    }
    MF_CHECK(sources.contains(name), FormatError, "[convert] tensor ", name,
             " is missing from the checkpoint ", sources.dir(),
             (gate_or_up ? util::concat(" (nor is there a fused ", fused, ")") : std::string()),
             "; check that the checkpoint matches its config.json (", spec.n_experts, " experts in layer ",
             spec.layer, ")");
    source.per_expert.push_back(sources.take(name));
    check_shape(source.per_expert.back(), block.shape, sources, name,
                util::concat("expert ", e, " ", block.name));
  }
  return source;
}

}  // namespace

Dtype BlockSource::dtype_of(int expert) const {
  return per_expert.empty() ? stacked.dtype : per_expert[static_cast<std::size_t>(expert)].dtype;
}

const std::byte* BlockSource::data_of(int expert) const {
  if (!per_expert.empty()) return per_expert[static_cast<std::size_t>(expert)].data;
  const std::uint64_t elem = static_cast<std::uint64_t>(expert) * expert_elems + first_elem;
  return stacked.data + elem * dtype_size(stacked.dtype);  // within bounds: the shape was checked
}

ExpertLayerPlan plan_expert_layer(const ExpertLayerSpec& spec, Sources& sources, std::optional<Dtype> dtype) {
  MF_CHECK(spec.n_experts >= 1 && !spec.blocks.empty(), ConfigError, "[convert] expert layer ", spec.layer,
           " (", spec.hf_prefix, ") has ", spec.n_experts, " experts and ", spec.blocks.size(),
           " blocks; check num_experts and the expert sizes in config.json");
  ExpertLayerPlan plan;
  ExpertLayerEntry& entry = plan.entry;
  entry.layer = spec.layer;
  char file[48];
  std::snprintf(file, sizeof file, "experts/layer_%03d.bin", spec.layer);
  entry.file = file;
  entry.n_experts = spec.n_experts;
  std::uint64_t end = 0;
  for (const ExpertBlockSpec& block : spec.blocks) {
    // Bound the largest size derived below (a fused f32 source: 2 x E x block) before any arithmetic.
    const auto largest = checked_nbytes(block.shape, 8 * static_cast<std::uint64_t>(spec.n_experts));
    MF_CHECK(largest.has_value() && *largest < (std::uint64_t{1} << 62), ConfigError,
             "[convert] expert block ", block.name, " of layer ", spec.layer, " has the impossible shape ",
             shape_string(block.shape), "; check the sizes in config.json");
    plan.sources.push_back(resolve_block(spec, block, sources));
    ExpertBlockEntry b;
    b.name = block.name;
    b.dtype = dtype.value_or(plan.sources.back().dtype());
    b.shape = block.shape;
    b.offset = align_up(end, kBlockAlignment);
    b.nbytes = static_cast<std::uint64_t>(element_count(block.shape)) * dtype_size(b.dtype);
    end = b.offset + b.nbytes;
    entry.blocks.push_back(std::move(b));
  }
  entry.stride = std::max(align_up(end, kFileAlignment), kFileAlignment);
  return plan;
}

void write_expert_layer(const ExpertLayerPlan& plan, const std::string& dst_dir, ProgressReporter& progress) {
  const ExpertLayerEntry& entry = plan.entry;
  const std::string path = join_path(dst_dir, entry.file);
  FileWriter writer(path, "convert");
  // One record buffer reused for every expert: padding is written as zeros once and never touched.
  std::vector<std::byte> record(static_cast<std::size_t>(entry.stride));
  const std::string current = util::concat("experts of layer ", entry.layer);
  for (int e = 0; e < entry.n_experts; ++e) {
    for (std::size_t b = 0; b < entry.blocks.size(); ++b) {
      const ExpertBlockEntry& block = entry.blocks[b];
      const BlockSource& source = plan.sources[b];
      convert_elements(source.data_of(e), source.dtype_of(e),
                       static_cast<std::size_t>(element_count(block.shape)), block.dtype,
                       record.data() + block.offset);
    }
    writer.write(record.data(), record.size());
    progress.advance(record.size(), current);
  }
  writer.close();
}

}  // namespace moeflux::format::detail

// The converter's expert half: finding every expert's gate/up/down tensors in any accepted source
// form (per expert, stacked, fused, MLX switch_mlp; float or MLX-quantized), checking their shapes,
// and writing one record per expert at a fixed 4 KiB-aligned stride.
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

// MLX-LM stacks a layer's experts as "model.layers.N.mlp.switch_mlp.<block>.weight" [E, ...].
std::string switch_mlp_prefix(const std::string& hf_prefix) {
  constexpr std::string_view kExperts = ".experts";
  if (!hf_prefix.ends_with(kExperts)) return {};
  return hf_prefix.substr(0, hf_prefix.size() - kExperts.size()) + ".switch_mlp";
}

// A stacked source [E, ...block] seen as expert 0's slice plus the bytes from one expert to the next.
BlockSource stacked_source(SourceTensor stacked, const Shape& block, std::uint64_t first_elem,
                           std::uint64_t expert_elems) {
  BlockSource source;
  TensorView& view = stacked.view;
  const std::uint64_t block_elems = static_cast<std::uint64_t>(element_count(block));
  if (is_quantized(view.dtype)) {
    // Rows of packed words, then rows of 16-bit scales and biases: both proportional to elements.
    const auto bits = static_cast<std::uint64_t>(quant_bits(view.dtype));
    source.data_stride = block_elems * bits / 8;
    source.section_stride = block_elems / static_cast<std::uint64_t>(view.group_size) * 2;
  } else {
    source.data_stride = expert_elems * dtype_size(view.dtype);
    view.data += first_elem * dtype_size(view.dtype);
  }
  view.shape = block;
  view.nbytes = static_cast<std::size_t>(source.data_stride);
  source.first = std::move(stacked);
  return source;
}

BlockSource resolve_block(const ExpertLayerSpec& spec, const ExpertBlockSpec& block, Sources& sources) {
  const auto n_experts = static_cast<std::int64_t>(spec.n_experts);
  const std::int64_t block_elems = element_count(block.shape);
  Shape stacked_shape = block.shape;
  stacked_shape.insert(stacked_shape.begin(), n_experts);
  const std::string stacked_meaning =
      util::concat(spec.n_experts, " experts of ", block.name, " ", shape_string(block.shape));
  const std::string fused = spec.hf_prefix + ".gate_up_proj";
  const bool gate_or_up = block.name == "gate_proj" || block.name == "up_proj";
  if (gate_or_up && sources.contains(fused)) {
    MF_CHECK(!block.shape.empty(), ConfigError, "[convert] expert block ", block.name, " of ", spec.hf_prefix,
             " has a scalar shape; fix the layout built from config.json");
    Shape expected = stacked_shape;
    expected[1] *= 2;
    SourceTensor source = sources.take_tensor(fused);
    check_shape(
        source.view, expected, sources, fused,
        util::concat(spec.n_experts, " experts of gate and up rows ", shape_string(block.shape), " each"));
    return stacked_source(std::move(source), block.shape,
                          block.name == "up_proj" ? static_cast<std::uint64_t>(block_elems) : 0,
                          static_cast<std::uint64_t>(2 * block_elems));
  }
  const std::string switch_mlp = switch_mlp_prefix(spec.hf_prefix);
  std::vector<std::string> stacked_names{spec.hf_prefix + "." + block.name};
  if (!switch_mlp.empty()) stacked_names.push_back(switch_mlp + "." + block.name + ".weight");
  for (const std::string& stacked : stacked_names) {
    if (!sources.contains(stacked)) continue;
    SourceTensor source = sources.take_tensor(stacked);
    check_shape(source.view, stacked_shape, sources, stacked, stacked_meaning);
    return stacked_source(std::move(source), block.shape, 0, static_cast<std::uint64_t>(block_elems));
  }
  BlockSource source;
  for (int e = 0; e < spec.n_experts; ++e) {
    const std::string base = util::concat(spec.hf_prefix, ".", e, ".");
    std::string name = base + block.name + ".weight";
    const std::string alias = alias_of(block.name);
    if (!sources.contains(name) && !alias.empty() && sources.contains(base + alias + ".weight")) {
      name = base + alias + ".weight";
    }
    MF_CHECK(sources.contains(name), FormatError, "[convert] tensor ", name,
             " is missing from the checkpoint ", sources.dir(), " (nor is there a",
             (gate_or_up ? util::concat(" fused ", fused, " or a") : ""), " stacked ", spec.hf_prefix, ".",
             block.name,
             (switch_mlp.empty() ? "" : util::concat(" or ", switch_mlp, ".", block.name, ".weight")),
             "); check that the checkpoint matches its config.json (", spec.n_experts, " experts in layer ",
             spec.layer, ")");
    source.per_expert.push_back(sources.take_tensor(name));
    check_shape(source.per_expert.back().view, block.shape, sources, name,
                util::concat("expert ", e, " ", block.name));
  }
  return source;
}

}  // namespace

SourceTensor BlockSource::of(int expert) const {
  if (!per_expert.empty()) return per_expert[static_cast<std::size_t>(expert)];
  SourceTensor slice = first;  // within bounds: the stacked shape was checked
  const auto e = static_cast<std::uint64_t>(expert);
  slice.view.data += e * data_stride;
  if (slice.scales != nullptr) {
    slice.scales += e * section_stride;
    slice.biases += e * section_stride;
  }
  return slice;
}

ExpertLayerPlan plan_expert_layer(const ExpertLayerSpec& spec, Sources& sources,
                                  const ConvertOptions& options) {
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
    // Every expert of a layer is stored alike, as expert 0's source decides; others are converted.
    const SourceTensor first = plan.sources.back().of(0);
    const StoredType type = stored_type(first.view, true, options.expert_bits, options);
    if (is_quantized(type.dtype)) {
      check_quant_params(
          type.quant, block.shape.back(),
          util::concat("expert block ", block.name, " of layer ", spec.layer, " (", spec.hf_prefix, ")"));
    }
    ExpertBlockEntry b;
    b.name = block.name;
    b.dtype = type.dtype;
    b.shape = block.shape;
    if (is_quantized(type.dtype)) {
      b.group_size = type.quant.group_size;
      b.scale_dtype = type.quant.scale_dtype;
    }
    b.offset = align_up(end, kBlockAlignment);
    b.nbytes = stored_size(first, type);
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
  std::vector<float> scratch;
  const std::string current = util::concat("experts of layer ", entry.layer);
  for (int e = 0; e < entry.n_experts; ++e) {
    for (std::size_t b = 0; b < entry.blocks.size(); ++b) {
      const ExpertBlockEntry& block = entry.blocks[b];
      const StoredType type{block.dtype, {quant_bits(block.dtype), block.group_size, block.scale_dtype}};
      encode_tensor(plan.sources[b].of(e), type, record.data() + block.offset, scratch);
    }
    writer.write(record.data(), record.size());
    progress.advance(record.size(), current);
  }
  writer.close();
}

}  // namespace moeflux::format::detail

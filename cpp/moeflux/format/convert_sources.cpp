// The converter's view of the source checkpoint: tensors by canonical name, and MLX-quantized
// triples (X.weight packed U32 words, X.scales, X.biases) read with the bits and group size that the
// "quantization" block of config.json gives, each checked against the others' shapes.
#include <nlohmann/json.hpp>

#include "moeflux/format/convert_detail.h"
#include "moeflux/format/detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format::detail {

namespace {

using nlohmann::json;

constexpr std::string_view kFixMlx =
    "the checkpoint and its config.json disagree; use the config.json that came with the MLX checkpoint";

// MLX-LM writes "quantization" and, for transformers, a copy named "quantization_config".
json quantization_block(const json& config) {
  for (const char* key : {"quantization", "quantization_config"}) {
    const auto it = config.find(key);
    if (it != config.end() && it->is_object()) return *it;
  }
  return nullptr;
}

// bits and group_size from an MLX quantization object; `where` names it in errors.
QuantParams params_of(const json& block, const json& fallback, const std::string& where) {
  QuantParams params;
  for (auto [key, field] : {std::pair{"bits", &params.bits}, std::pair{"group_size", &params.group_size}}) {
    const json& value = block.contains(key) ? block[key] : fallback.value(key, json());
    MF_CHECK(value.is_number_integer(), FormatError, "[convert] ", where, " has no integer \"", key,
             "\"; an MLX-quantized checkpoint needs it to read its packed weights");
    *field = value.get<int>();
  }
  MF_CHECK(params.bits == 8 || params.bits == 4 || params.bits == 3 || params.bits == 2, Unsupported,
           "[convert] ", where, " gives ", params.bits,
           "-bit weights; moeflux reads 8, 4, 3 and 2 bits; "
           "quantize the original checkpoint with moeflux convert --expert-bits/--dense-bits instead");
  MF_CHECK(params.group_size == 32 || params.group_size == 64 || params.group_size == 128, Unsupported,
           "[convert] ", where, " gives group size ", params.group_size,
           "; moeflux reads groups of 32, 64 and 128; quantize the original checkpoint with moeflux convert "
           "instead");
  return params;
}

Shape with_last(Shape shape, std::int64_t last) {
  shape.back() = last;
  return shape;
}

}  // namespace

Sources::Sources(const std::string& dir, const json& config)
    : dir_(dir), checkpoint_(SafetensorsCheckpoint::open(dir)), quantization_(quantization_block(config)) {
  for (const std::string& name : checkpoint_.names()) {
    const auto [it, inserted] = by_canonical_.emplace(canonical_tensor_name(name), name);
    MF_CHECK(inserted, FormatError, "[convert] the checkpoint ", dir, " holds both ", it->second, " and ",
             name, ", which name the same tensor; remove the duplicate shard");
  }
}

TensorView Sources::take(const std::string& canonical) {
  const auto it = by_canonical_.find(canonical);
  MF_ASSERT(it != by_canonical_.end(), "take() of absent tensor ", canonical);
  taken_.insert(canonical);
  return checkpoint_.get(it->second);
}

const std::string& Sources::file_of(const std::string& canonical) const {
  return checkpoint_.file_of(by_canonical_.at(canonical));
}

std::vector<std::string> Sources::ignored() const {
  std::vector<std::string> out;
  for (const auto& [canonical, name] : by_canonical_) {
    if (taken_.count(canonical) == 0) out.push_back(canonical);
  }
  return out;
}

// The module's entry of the quantization block (keyed by MLX module path, as in the checkpoint or
// canonical) overrides the block's own bits and group size; `false` there means "not quantized".
QuantParams Sources::mlx_params(const std::string& module) const {
  const std::string config = join_path(dir_, "config.json");
  MF_CHECK(quantization_.is_object(), FormatError, "[convert] tensor ", module, ".weight in ",
           file_of(module + ".weight"), " is MLX-quantized (", module, ".scales is beside it), but ", config,
           " has no \"quantization\" block giving its bits and group size; ", kFixMlx);
  const auto mode = quantization_.find("mode");
  MF_CHECK(mode == quantization_.end() || *mode == "affine", Unsupported, "[convert] ", config,
           " quantizes with mode ", mode == quantization_.end() ? "" : mode->dump(),
           "; moeflux reads only MLX's affine quantization (w = q * scale + bias)");
  const std::string source_module = by_canonical_.at(module + ".weight");
  for (const std::string& key : {source_module.substr(0, source_module.size() - 7), module}) {
    const auto it = quantization_.find(key);
    if (it == quantization_.end()) continue;
    MF_CHECK(it->is_object(), FormatError, "[convert] ", config, " marks ", key,
             " as not quantized, but the checkpoint holds ", key, ".scales; ", kFixMlx);
    return params_of(*it, quantization_, util::concat(config, " (quantization of ", key, ")"));
  }
  return params_of(quantization_, json::object(), util::concat(config, " (\"quantization\")"));
}

SourceTensor Sources::take_tensor(const std::string& canonical) {
  const std::string module = canonical.ends_with(".weight") ? canonical.substr(0, canonical.size() - 7) : "";
  if (module.empty() || !contains(module + ".scales")) return {take(canonical)};

  const QuantParams quant = mlx_params(module);
  const std::string file = file_of(canonical);
  MF_CHECK(contains(module + ".biases"), FormatError, "[convert] tensor ", module, ".scales in ", file,
           " has no ", module, ".biases beside it; moeflux reads MLX's affine quantization, which has both; ",
           kFixMlx);
  SourceTensor source;
  const TensorView scales = take(module + ".scales");
  const TensorView biases = take(module + ".biases");
  taken_.insert(canonical);
  source.view = checkpoint_.get_packed(by_canonical_.at(canonical), quantized_dtype(quant.bits));
  TensorView& view = source.view;
  MF_CHECK(scales.dtype == Dtype::bf16 || scales.dtype == Dtype::f16, Unsupported, "[convert] tensor ",
           scales.name, " in ", file, " has dtype ", dtype_name(scales.dtype),
           "; moeflux stores scales and biases as bf16 or f16; re-export the MLX checkpoint in bf16 or "
           "quantize the original checkpoint with moeflux convert");
  // MLX packs a row of `cols` q values into cols * bits / 32 words: the bit stream of quant.h.
  const std::int64_t words = view.shape.empty() ? 0 : view.shape.back();
  MF_CHECK(view.shape.size() >= 2 && (words * 32) % quant.bits == 0 &&
               (words * 32 / quant.bits) % quant.group_size == 0,
           FormatError, "[convert] tensor ", view.name, " in ", file, " has shape ", shape_string(view.shape),
           ", which holds no whole rows of ", quant.bits, "-bit values in groups of ", quant.group_size, "; ",
           kFixMlx);
  view.shape.back() = words * 32 / quant.bits;
  view.group_size = quant.group_size;
  view.scale_dtype = scales.dtype;
  const Shape groups = with_last(view.shape, view.shape.back() / quant.group_size);
  for (const TensorView* part : {&scales, &biases}) {
    MF_CHECK(part->shape == groups && part->dtype == scales.dtype, FormatError, "[convert] tensor ",
             part->name, " in ", file_of(canonical_tensor_name(part->name)), " has shape ",
             shape_string(part->shape), " and dtype ", dtype_name(part->dtype), " but ", view.name, " (",
             quant.bits, "-bit, groups of ", quant.group_size, ") needs ", shape_string(groups), " of ",
             dtype_name(scales.dtype), "; ", kFixMlx);
  }
  source.scales = scales.data;
  source.biases = biases.data;
  return source;
}

}  // namespace moeflux::format::detail

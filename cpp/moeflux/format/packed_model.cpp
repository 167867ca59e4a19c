// Opening a packed model directory: config.json, the manifest, dense.bin mapped, and every file size
// checked against the manifest, so a truncated or mismatched file fails here rather than mid-inference.
#include "moeflux/format/packed_model.h"

#include <filesystem>
#include <system_error>

#include "moeflux/format/detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kReconvert = "re-convert the checkpoint with `moeflux convert SRC DST`";

// Size of a file the manifest names; FormatError when it is missing (a partial copy of the model).
std::uint64_t packed_file_size(const std::string& path, const std::string& dir) {
  std::error_code ec;
  MF_CHECK(fs::is_regular_file(path, ec), FormatError, "[open_packed_model] ", path,
           " is missing, though the manifest of ", dir, " names it; copy the whole model directory or ",
           kReconvert);
  return util::file_size(path);
}

}  // namespace

nlohmann::json read_config(const std::string& dir) {
  const std::string path = detail::join_path(dir, "config.json");
  std::error_code ec;
  MF_CHECK(fs::is_regular_file(path, ec), ConfigError, "[read_config] ", path,
           " is missing; a model directory needs the config.json of its checkpoint; copy it there");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(detail::read_text_file(path, "read_config"));
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(util::concat("[read_config] ", path, " is not valid JSON (", e.what(),
                                   "); restore the config.json of the checkpoint"));
  }
  MF_CHECK(config.is_object(), ConfigError, "[read_config] ", path,
           " is not a JSON object; restore the config.json of the checkpoint");
  return config;
}

std::shared_ptr<const PackedModel> PackedModel::open(const std::string& dir) {
  std::error_code ec;
  MF_CHECK(fs::is_directory(dir, ec), IoError, "[open_packed_model] ", dir,
           " is not a directory; pass the directory of a packed moeflux model");
  auto model = std::make_shared<PackedModel>();
  model->dir_ = dir;
  model->config_ = read_config(dir);
  const std::string manifest_path = detail::join_path(dir, std::string(kManifestFile));
  MF_CHECK(fs::is_regular_file(manifest_path, ec), FormatError, "[open_packed_model] ", dir,
           " is not a packed moeflux model (no ", kManifestFile,
           "); convert it with `moeflux convert SRC DST`");
  model->manifest_ = Manifest::read(manifest_path);
  const Manifest& m = model->manifest_;

  const std::string dense_path = detail::join_path(dir, std::string(kDenseFile));
  const std::uint64_t dense_size = packed_file_size(dense_path, dir);
  MF_CHECK(dense_size == m.dense_size, FormatError, "[open_packed_model] ", dense_path, " has ", dense_size,
           " bytes but ", manifest_path, " expects ", m.dense_size,
           "; the file is truncated or from another conversion; copy it again or ", kReconvert);
  model->dense_file_ = util::MappedFile(dense_path);
  MF_CHECK(model->dense_file_.size() == m.dense_size, FormatError, "[open_packed_model] ", dense_path,
           " changed size while it was opened; do not write to a model directory that is in use");
  for (std::size_t i = 0; i < m.dense.size(); ++i) model->dense_index_.emplace(m.dense[i].name, i);

  for (std::size_t i = 0; i < m.expert_layers.size(); ++i) {
    const ExpertLayerEntry& layer = m.expert_layers[i];
    const std::string path = model->expert_file_path(layer);
    const std::uint64_t size = packed_file_size(path, dir);
    MF_CHECK(size == layer.file_size(), FormatError, "[open_packed_model] ", path, " (experts of layer ",
             layer.layer, ") has ", size, " bytes but ", manifest_path, " expects ", layer.file_size(), " (",
             layer.n_experts, " experts x ", layer.stride,
             " bytes); the file is truncated or from another "
             "conversion; copy it again or ",
             kReconvert);
    model->expert_index_.emplace(layer.layer, i);
  }
  return model;
}

bool PackedModel::has_dense(const std::string& name) const { return dense_index_.count(name) != 0; }

TensorView PackedModel::dense(const std::string& name) const {
  const auto it = dense_index_.find(name);
  MF_CHECK(it != dense_index_.end(), FormatError, "[packed_model_dense] tensor ", name, " is not in ",
           detail::join_path(dir_, std::string(kManifestFile)),
           "; the model was converted with a layout that lacks it; ", kReconvert);
  const DenseEntry& entry = manifest_.dense[it->second];
  TensorView view;
  view.name = entry.name;
  view.dtype = entry.dtype;
  view.shape = entry.shape;
  view.data = dense_file_.data() + entry.offset;  // bounds checked by Manifest::from_json and open()
  view.nbytes = static_cast<std::size_t>(entry.nbytes);
  view.group_size = entry.group_size;
  view.scale_dtype = entry.scale_dtype;
  return view;
}

const ExpertLayerEntry* PackedModel::expert_layer(int layer) const {
  const auto it = expert_index_.find(layer);
  return it == expert_index_.end() ? nullptr : &manifest_.expert_layers[it->second];
}

std::string PackedModel::expert_file_path(const ExpertLayerEntry& entry) const {
  return detail::join_path(dir_, entry.file);
}

void PackedModel::check(const ModelLayout& layout) const {
  const std::string manifest_path = detail::join_path(dir_, std::string(kManifestFile));
  for (const DenseTensorSpec& spec : layout.dense) {
    const auto it = dense_index_.find(spec.name);
    if (it == dense_index_.end()) {
      MF_CHECK(!spec.required, FormatError, "[check_packed_model] tensor ", spec.name, " of shape ",
               shape_string(spec.shape), " is missing from ", manifest_path,
               "; the model was converted for another config.json; ", kReconvert);
      continue;
    }
    const DenseEntry& entry = manifest_.dense[it->second];
    MF_CHECK(entry.shape == spec.shape, FormatError, "[check_packed_model] tensor ", spec.name, " in ",
             detail::join_path(dir_, std::string(kDenseFile)), " has shape ", shape_string(entry.shape),
             " but config.json implies ", shape_string(spec.shape),
             "; the model was converted for another config.json; ", kReconvert);
  }
  for (const ExpertLayerSpec& spec : layout.expert_layers) {
    const ExpertLayerEntry* layer = expert_layer(spec.layer);
    MF_CHECK(layer != nullptr, FormatError, "[check_packed_model] ", manifest_path,
             " has no experts for layer ", spec.layer, " (", spec.hf_prefix,
             "); the model was converted for another config.json; ", kReconvert);
    MF_CHECK(layer->n_experts == spec.n_experts, FormatError, "[check_packed_model] ",
             expert_file_path(*layer), " holds ", layer->n_experts, " experts but config.json implies ",
             spec.n_experts, " for layer ", spec.layer, "; ", kReconvert);
    bool same = layer->blocks.size() == spec.blocks.size();
    for (std::size_t b = 0; same && b < spec.blocks.size(); ++b) {
      same = layer->blocks[b].name == spec.blocks[b].name && layer->blocks[b].shape == spec.blocks[b].shape;
    }
    if (same) continue;
    std::string found;
    std::string expected;
    for (const ExpertBlockEntry& b : layer->blocks) found += util::concat(" ", b.name, shape_string(b.shape));
    for (const ExpertBlockSpec& b : spec.blocks) expected += util::concat(" ", b.name, shape_string(b.shape));
    throw FormatError(util::concat("[check_packed_model] expert blocks of layer ", spec.layer, " (",
                                   spec.hf_prefix, ") in ", expert_file_path(*layer), " are", found,
                                   " but config.json implies", expected,
                                   "; the model was converted for another config.json; ", kReconvert));
  }
}

}  // namespace moeflux::format

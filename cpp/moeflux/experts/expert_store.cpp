#include "moeflux/experts/expert_store.h"

#include "moeflux/util/error.h"

namespace moeflux::experts {

ExpertStore::ExpertStore(std::shared_ptr<const format::PackedModel> model) : model_(std::move(model)) {
  for (const auto& entry : model_->manifest().expert_layers) {
    if (static_cast<std::size_t>(entry.layer) >= layers_.size()) layers_.resize(entry.layer + 1);
    Layer& layer = layers_[static_cast<std::size_t>(entry.layer)];
    layer.entry = &entry;
    layer.file = util::MappedFile(model_->expert_file_path(entry));
    MF_CHECK(layer.file.size() == entry.file_size(), FormatError, "[open_expert_store] ",
             layer.file.path(), " holds ", layer.file.size(), " bytes but the manifest says ",
             entry.file_size(), "; the file is truncated or foreign: re-convert the model");
  }
}

std::vector<ExpertRecord> ExpertStore::fetch(int layer, std::span<const std::int32_t> experts) {
  MF_ASSERT(layer >= 0 && static_cast<std::size_t>(layer) < layers_.size() &&
                layers_[static_cast<std::size_t>(layer)].entry != nullptr,
            "layer ", layer, " has no experts");
  const Layer& l = layers_[static_cast<std::size_t>(layer)];
  std::vector<ExpertRecord> records;
  records.reserve(experts.size());
  for (std::int32_t e : experts) {
    MF_CHECK(e >= 0 && e < l.entry->n_experts, ShapeError, "[fetch_experts] expert ", e,
             " of layer ", layer, " is out of range (the layer has ", l.entry->n_experts, ")");
    const std::byte* record = l.file.data() + static_cast<std::uint64_t>(e) * l.entry->stride;
    ExpertRecord out{e, {}};
    for (const auto& block : l.entry->blocks)
      out.blocks.push_back({block.name, block.dtype, block.shape, record + block.offset, block.nbytes});
    records.push_back(std::move(out));
    stats_.fetches += 1;
    stats_.bytes_read += l.entry->record_bytes();
  }
  return records;
}

}  // namespace moeflux::experts

// Placeholder implementation (mapped files, no budget) until the io_uring store lands.
#include "moeflux/experts/expert_store.h"

#include "moeflux/util/error.h"
#include "moeflux/util/mapped_file.h"

namespace moeflux::experts {

struct ExpertStore::Impl {
  struct Layer {
    const format::ExpertLayerEntry* entry = nullptr;
    util::MappedFile file;
  };
  std::shared_ptr<const format::PackedModel> model;
  std::vector<Layer> layers;
  StoreStats stats;
};

ExpertStore::ExpertStore(std::shared_ptr<const format::PackedModel> model, const StoreOptions&)
    : impl_(std::make_unique<Impl>()) {
  impl_->model = std::move(model);
  for (const auto& entry : impl_->model->manifest().expert_layers) {
    if (static_cast<std::size_t>(entry.layer) >= impl_->layers.size()) impl_->layers.resize(entry.layer + 1);
    auto& layer = impl_->layers[static_cast<std::size_t>(entry.layer)];
    layer.entry = &entry;
    layer.file = util::MappedFile(impl_->model->expert_file_path(entry));
  }
}

ExpertStore::~ExpertStore() = default;

int ExpertStore::capacity(int layer) const { return impl_->layers.at(static_cast<std::size_t>(layer)).entry->n_experts; }

std::uint64_t ExpertStore::min_cache_bytes(const format::PackedModel&, int) { return 0; }

std::vector<ExpertRecord> ExpertStore::fetch(int layer, std::span<const std::int32_t> experts) {
  const auto& l = impl_->layers.at(static_cast<std::size_t>(layer));
  std::vector<ExpertRecord> records;
  for (std::int32_t e : experts) {
    const std::byte* record = l.file.data() + static_cast<std::uint64_t>(e) * l.entry->stride;
    ExpertRecord out{e, {}};
    for (const auto& b : l.entry->blocks)
      out.blocks.push_back({b.name, b.dtype, b.shape, record + b.offset, b.nbytes, b.group_size, b.scale_dtype});
    records.push_back(std::move(out));
    impl_->stats.misses += 1;
    impl_->stats.bytes_read += l.entry->stride;
  }
  return records;
}

StoreStats ExpertStore::stats() const { return impl_->stats; }
void ExpertStore::reset_stats() { impl_->stats = {}; }

}  // namespace moeflux::experts

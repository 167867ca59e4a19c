// The expert store: makes a layer's routed experts readable for the backend. This version maps the
// per-layer expert files; the io_uring reader, slot caches and budgets replace its insides later
// without changing the interface.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "moeflux/format/packed_model.h"
#include "moeflux/format/tensor_view.h"

namespace moeflux::experts {

// One expert's blocks (gate_proj, up_proj, down_proj in record order), viewing the store's memory.
struct ExpertRecord {
  std::int32_t expert = 0;
  std::vector<format::TensorView> blocks;
};

struct StoreStats {
  std::uint64_t fetches = 0;       // expert records handed out
  std::uint64_t bytes_read = 0;    // record bytes made resident
};

class ExpertStore {
 public:
  // Maps every expert file of the packed model; throws IoError / FormatError naming the file.
  explicit ExpertStore(std::shared_ptr<const format::PackedModel> model);

  // Records of `experts` (ascending, unique) of decoder layer `layer`. The views stay valid until
  // the next fetch for the same layer. Throws ShapeError for an expert id out of range.
  std::vector<ExpertRecord> fetch(int layer, std::span<const std::int32_t> experts);

  StoreStats stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 private:
  struct Layer {
    const format::ExpertLayerEntry* entry = nullptr;
    util::MappedFile file;
  };
  std::shared_ptr<const format::PackedModel> model_;
  std::vector<Layer> layers_;  // indexed by decoder layer; entry == nullptr for dense layers
  StoreStats stats_;
};

}  // namespace moeflux::experts

// The device tier of the expert cache: slots in device-local memory, each one storage per block
// (gate, up, down) sized for the largest record as uploaded, and the policy of util/slot_pools.h over
// them. Slots are keyed by (layer, expert), whose bytes never change, so a hit needs no transfer.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/vulkan/context.h"
#include "moeflux/util/slot_pools.h"

namespace moeflux::backend::vk {

struct DeviceTierStats {
  std::uint64_t hits = 0, misses = 0, bytes_uploaded = 0, evictions = 0;
  double upload_seconds = 0.0;  // host time recording misses' uploads (staging copies included)
};

class DeviceExpertCache {
 public:
  // block_bytes: bytes of each block role (gate, up, down) in one slot. Throws BudgetError when
  // budget_bytes (0: every expert) holds fewer than k slots.
  DeviceExpertCache(const std::shared_ptr<Context>& context, const ExpertCacheLayout& layout,
                    std::array<std::uint64_t, 3> block_bytes, std::uint64_t budget_bytes);

  int moe_layer(int layer) const;  // index among the layout's layers; -1 when not one of them
  std::uint32_t capacity(int moe_layer) const { return slots_.pool_size(moe_layer); }
  util::SlotPools& slots() { return slots_; }
  const util::SlotPools& slots() const { return slots_; }
  const std::array<std::shared_ptr<VulkanStorage>, 3>& slot(std::uint32_t s) const { return storage_[s]; }

  std::uint64_t n_slots() const { return storage_.size(); }
  std::uint64_t slot_bytes() const { return slot_bytes_; }
  std::uint64_t cache_bytes() const { return slot_bytes_ * storage_.size(); }
  DeviceTierStats stats;

 private:
  std::vector<int> moe_index_;  // decoder layer -> MoE layer
  std::uint64_t slot_bytes_ = 0;
  std::vector<std::array<std::shared_ptr<VulkanStorage>, 3>> storage_;
  util::SlotPools slots_;
};

}  // namespace moeflux::backend::vk

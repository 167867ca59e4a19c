// The device tier of the expert cache: slots in device-local memory, each one storage per block
// (gate, up, down) sized for the largest record as uploaded, and the policy of util/slot_pools.h over
// them. Slots are keyed by (layer, expert), whose bytes never change, so a hit needs no transfer.
// The expert table on the device gives each resident expert's block addresses [moe_layers, E, 6]
// (gate, up, down as low/high words; 0: not resident), so that a layer whose experts are all
// resident runs from the routing the GPU computed, without the host.
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
  std::uint64_t routed_layers = 0;  // MoE layer calls run from the device's routing (every expert resident)
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

  // The expert table: words [table_first(m), + n_experts(m) * 6) of table() are MoE layer m's.
  const Tensor& table() const { return table_; }
  std::int64_t table_first(int moe_layer) const { return static_cast<std::int64_t>(moe_layer) * max_experts_ * 6; }
  int n_experts(int moe_layer) const { return n_experts_[static_cast<std::size_t>(moe_layer)]; }
  // Every expert of the layer holds a slot (its pool is the layer's own and full).
  bool all_resident(int moe_layer) const {
    return resident_[static_cast<std::size_t>(moe_layer)] == static_cast<std::uint32_t>(n_experts(moe_layer));
  }
  bool holds_all() const;
  // Slot s now holds `expert` of MoE layer m (its blocks' addresses written to the table); the
  // record it held before, if any, leaves the table.
  void record_slot(Recorder& recorder, std::uint32_t s, int moe_layer, std::int32_t expert);
  // Slot s, assigned by the policy, holds nothing (its upload failed): it leaves the table and the policy.
  void forget_slot(Recorder& recorder, std::uint32_t s);
  std::uint64_t block_bytes(std::size_t role) const { return block_bytes_[role]; }

  // Slots filled by upload_expert for the current upload batch that moe_experts has not used yet:
  // its first use of one is the miss already counted, not a hit. Cleared by the next batch.
  bool uploaded_ahead(std::uint32_t s) const { return uploaded_ahead_[s]; }
  void mark_uploaded_ahead(std::uint32_t s);
  void clear_uploaded_ahead(std::uint32_t s) { uploaded_ahead_[s] = false; }
  void clear_uploaded_ahead();

  std::uint64_t n_slots() const { return storage_.size(); }
  std::uint64_t slot_bytes() const { return slot_bytes_; }
  std::uint64_t cache_bytes() const { return slot_bytes_ * storage_.size(); }
  DeviceTierStats stats;

 private:
  void write_entry(Recorder& recorder, int moe_layer, std::int32_t expert, const std::array<std::uint32_t, 6>& words);

  std::vector<int> moe_index_;  // decoder layer -> MoE layer
  std::vector<int> n_experts_;  // per MoE layer
  int max_experts_ = 0;
  Tensor table_;
  std::vector<std::pair<int, std::int32_t>> holder_;  // per slot: (MoE layer, expert), or (-1, -1)
  std::vector<std::uint32_t> resident_;              // per MoE layer: experts holding a slot
  std::uint64_t slot_bytes_ = 0;
  std::array<std::uint64_t, 3> block_bytes_{};
  std::vector<std::array<std::shared_ptr<VulkanStorage>, 3>> storage_;
  std::vector<bool> uploaded_ahead_;           // per slot
  std::vector<std::uint32_t> uploaded_ahead_list_;  // the slots set in uploaded_ahead_
  util::SlotPools slots_;
};

}  // namespace moeflux::backend::vk

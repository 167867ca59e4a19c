// The device tier's policy, without Vulkan: slots split into pools (one per MoE layer when every
// layer can hold its top-k, else one shared pool), least-recently-used eviction within a pool, and
// the pins of the current moe_experts batch, which are never evicted until the next batch.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace moeflux::backend::vk {

struct SlotPlan {
  std::uint64_t n_slots = 0;
  std::vector<std::uint32_t> pool_sizes;
  std::vector<int> pool_of_layer;  // per MoE layer
};

// n_slots (at most the experts of all layers) over the layers' pools: per layer when
// n_slots >= layers * k, split evenly and never more than a layer's experts, else one shared pool.
SlotPlan plan_slots(const std::vector<int>& n_experts, std::uint64_t n_slots, int k);

class DeviceSlots {
 public:
  DeviceSlots(const SlotPlan& plan, const std::vector<int>& n_experts);

  void begin_batch() { ++epoch_; }  // the previous batch's pins end
  // The slot holding (layer, expert), pinned and most recent; -1 when not resident.
  std::int64_t find(int layer, int expert);
  // A slot for a non-resident (layer, expert): a free one, else the least recently used unpinned
  // slot of the layer's pool (*evicted set). Pinned, most recent.
  std::uint32_t assign(int layer, int expert, bool* evicted);
  std::uint32_t pool_size(int layer) const { return pools_[static_cast<std::size_t>(pool_of_layer_[static_cast<std::size_t>(layer)])].size; }
  std::vector<std::pair<int, int>> lru_order(int layer) const;  // oldest first; for tests

 private:
  static constexpr std::int32_t kNone = -1;
  struct Slot {
    std::int32_t layer = kNone, expert = kNone;
    std::int32_t older = kNone, newer = kNone;
    std::uint64_t pinned = 0;  // epoch of the batch that pinned it
  };
  struct Pool {
    std::uint32_t size = 0;
    std::int32_t oldest = kNone, newest = kNone;
    std::vector<std::uint32_t> free;
  };
  Pool& pool_of(int layer) { return pools_[static_cast<std::size_t>(pool_of_layer_[static_cast<std::size_t>(layer)])]; }
  void unlink(Pool& pool, std::uint32_t slot);
  void push_newest(Pool& pool, std::uint32_t slot);

  std::vector<Slot> slots_;
  std::vector<Pool> pools_;
  std::vector<int> pool_of_layer_;
  std::vector<std::vector<std::int32_t>> resident_;  // [layer][expert] -> slot or kNone
  std::uint64_t epoch_ = 1;
};

}  // namespace moeflux::backend::vk

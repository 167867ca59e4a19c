// The policy of both expert cache tiers (host slots in experts/, device slots in backend/vulkan/):
// which (layer, expert) each slot holds, pools of slots in least-recently-used order, and the pins
// of the current batch, whose slots are never evicted until the next batch. No memory, no I/O.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>


namespace moeflux::util {

// Slots split into pools: one per MoE layer when every layer can hold its top-k, else one shared.
struct PoolPlan {
  std::uint64_t n_slots = 0;
  std::vector<std::uint32_t> pool_sizes;
  std::vector<int> pool_of_layer;  // pool of each MoE layer
};

// n_slots (at most the experts of all layers) over the layers: per layer when n_slots >= layers * k,
// split evenly and never more than a layer's experts (the remainder to the first layers), else one
// shared pool.
PoolPlan plan_pools(const std::vector<int>& n_experts, std::uint64_t n_slots, int k);

class SlotPools {
 public:
  // n_experts: per MoE layer, in the plan's order.
  SlotPools(const PoolPlan& plan, const std::vector<int>& n_experts);

  // Starts a batch (a fetch, a moe_experts call): the previous batch's pins end.
  void begin_batch() { ++epoch_; }
  // The slot holding (layer, expert), pinned and made most recent; -1 when it is not resident.
  std::int64_t find(int layer, int expert);
  // A slot for (layer, expert), which is not resident: a free one, else the least recently used
  // unpinned slot of the layer's pool (its record evicted, *evicted set). Pinned, most recent.
  std::uint32_t assign(int layer, int expert, bool* evicted);
  // Forgets the record of `slot` (its read failed): the slot is free again, never a hit.
  void discard(std::uint32_t slot);

  // Whether (layer, expert) holds a slot now; touches nothing (no pin, no recency).
  bool holds(int layer, int expert) const { return resident_[layer][expert] != kNone; }
  // The slot holding (layer, expert), or -1; touches nothing.
  std::int64_t slot_of(int layer, int expert) const { return resident_[layer][expert]; }
  std::uint32_t pool_size(int layer) const { return pools_[pool_of_layer_[layer]].size; }
  // Least to most recently used experts of the layer's pool, as (layer, expert); for tests.
  std::vector<std::pair<int, int>> lru_order(int layer) const;

 private:
  static constexpr std::int32_t kNone = -1;
  struct Slot {
    std::int32_t layer = kNone;  // kNone: free
    std::int32_t expert = kNone;
    std::int32_t prev = kNone, next = kNone;  // LRU links within the pool
    std::uint64_t pinned = 0;                 // epoch of the fetch that pinned it
  };
  struct Pool {
    std::uint32_t size = 0;
    std::int32_t oldest = kNone, newest = kNone;
    std::vector<std::uint32_t> free;
  };
  void unlink(Pool& pool, std::uint32_t slot);
  void push_newest(Pool& pool, std::uint32_t slot);

  std::vector<Slot> slots_;
  std::vector<Pool> pools_;
  std::vector<int> pool_of_layer_;
  std::vector<std::vector<std::int32_t>> resident_;  // [layer][expert] -> slot or kNone
  std::uint64_t epoch_ = 1;
};

}  // namespace moeflux::util

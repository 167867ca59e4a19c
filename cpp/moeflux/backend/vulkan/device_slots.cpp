// Pool planning and LRU bookkeeping of the device tier (the host tier's policy, kept apart from
// experts/ because backend/ does not depend on it).
#include "moeflux/backend/vulkan/device_slots.h"

#include <algorithm>
#include <numeric>

#include "moeflux/util/error.h"

namespace moeflux::backend::vk {

SlotPlan plan_slots(const std::vector<int>& n_experts, std::uint64_t n_slots, int k) {
  SlotPlan plan;
  plan.n_slots = n_slots;
  const std::size_t L = n_experts.size();
  if (L == 0) return plan;
  if (n_slots < L * static_cast<std::uint64_t>(k)) {
    plan.pool_sizes = {static_cast<std::uint32_t>(n_slots)};
    plan.pool_of_layer.assign(L, 0);
    return plan;
  }
  // Water-filling: the smallest layers take all their experts when that is below the even share.
  std::vector<std::size_t> order(L);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return n_experts[a] < n_experts[b]; });
  plan.pool_sizes.assign(L, 0);
  std::uint64_t left = n_slots;
  for (std::size_t j = 0; j < L; ++j) {
    const std::uint64_t share = left / (L - j);
    const auto n = static_cast<std::uint64_t>(n_experts[order[j]]);
    if (n <= share) {
      plan.pool_sizes[order[j]] = static_cast<std::uint32_t>(n);
      left -= n;
      continue;
    }
    std::vector<std::size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(j), order.end());
    std::sort(rest.begin(), rest.end());  // the remainder goes to the first layers
    const std::uint64_t extra = left - share * (L - j);
    for (std::size_t r = 0; r < rest.size(); ++r) plan.pool_sizes[rest[r]] = static_cast<std::uint32_t>(share + (r < extra ? 1 : 0));
    break;
  }
  plan.pool_of_layer.resize(L);
  std::iota(plan.pool_of_layer.begin(), plan.pool_of_layer.end(), 0);
  return plan;
}

DeviceSlots::DeviceSlots(const SlotPlan& plan, const std::vector<int>& n_experts)
    : slots_(plan.n_slots), pools_(plan.pool_sizes.size()), pool_of_layer_(plan.pool_of_layer) {
  std::uint32_t next = 0;
  for (std::size_t p = 0; p < pools_.size(); ++p) {
    pools_[p].size = plan.pool_sizes[p];
    for (std::uint32_t i = 0; i < plan.pool_sizes[p]; ++i) pools_[p].free.push_back(next + plan.pool_sizes[p] - 1 - i);
    next += plan.pool_sizes[p];
  }
  MF_ASSERT(next == plan.n_slots, "device pools hold ", next, " of ", plan.n_slots, " slots");
  for (int n : n_experts) resident_.emplace_back(static_cast<std::size_t>(n), kNone);
}

std::int64_t DeviceSlots::find(int layer, int expert) {
  const std::int32_t slot = resident_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(expert)];
  if (slot == kNone) return -1;
  Pool& pool = pool_of(layer);
  unlink(pool, static_cast<std::uint32_t>(slot));
  push_newest(pool, static_cast<std::uint32_t>(slot));
  slots_[static_cast<std::size_t>(slot)].pinned = epoch_;
  return slot;
}

std::uint32_t DeviceSlots::assign(int layer, int expert, bool* evicted) {
  auto& here = resident_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(expert)];
  MF_ASSERT(here == kNone, "expert ", expert, " of MoE layer ", layer, " is already on the device");
  Pool& pool = pool_of(layer);
  std::uint32_t slot = 0;
  *evicted = false;
  if (!pool.free.empty()) {
    slot = pool.free.back();
    pool.free.pop_back();
  } else {
    std::int32_t s = pool.oldest;
    while (s != kNone && slots_[static_cast<std::size_t>(s)].pinned == epoch_) s = slots_[static_cast<std::size_t>(s)].newer;
    MF_ASSERT(s != kNone, "every device slot of the pool of MoE layer ", layer, " is pinned by this batch");
    slot = static_cast<std::uint32_t>(s);
    unlink(pool, slot);
    const Slot& old = slots_[slot];
    resident_[static_cast<std::size_t>(old.layer)][static_cast<std::size_t>(old.expert)] = kNone;
    *evicted = true;
  }
  slots_[slot].layer = layer;
  slots_[slot].expert = expert;
  slots_[slot].pinned = epoch_;
  here = static_cast<std::int32_t>(slot);
  push_newest(pool, slot);
  return slot;
}

std::vector<std::pair<int, int>> DeviceSlots::lru_order(int layer) const {
  std::vector<std::pair<int, int>> out;
  const Pool& pool = pools_[static_cast<std::size_t>(pool_of_layer_[static_cast<std::size_t>(layer)])];
  for (std::int32_t s = pool.oldest; s != kNone; s = slots_[static_cast<std::size_t>(s)].newer)
    out.emplace_back(slots_[static_cast<std::size_t>(s)].layer, slots_[static_cast<std::size_t>(s)].expert);
  return out;
}

void DeviceSlots::unlink(Pool& pool, std::uint32_t slot) {
  Slot& s = slots_[slot];
  (s.older == kNone ? pool.oldest : slots_[static_cast<std::size_t>(s.older)].newer) = s.newer;
  (s.newer == kNone ? pool.newest : slots_[static_cast<std::size_t>(s.newer)].older) = s.older;
  s.older = s.newer = kNone;
}

void DeviceSlots::push_newest(Pool& pool, std::uint32_t slot) {
  Slot& s = slots_[slot];
  s.older = pool.newest;
  s.newer = kNone;
  (pool.newest == kNone ? pool.oldest : slots_[static_cast<std::size_t>(pool.newest)].newer) = static_cast<std::int32_t>(slot);
  pool.newest = static_cast<std::int32_t>(slot);
}

}  // namespace moeflux::backend::vk

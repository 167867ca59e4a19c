#include "moeflux/util/slot_pools.h"

#include <algorithm>
#include <numeric>

#include "moeflux/util/error.h"

namespace moeflux::util {
namespace {

// Splits n slots (at most the experts of all layers) evenly over the layers, never giving a layer
// more slots than it has experts; slots left by the division go to the first layers.
std::vector<std::uint32_t> per_layer_pools(const std::vector<int>& n_experts, std::uint64_t n) {
  const std::size_t L = n_experts.size();
  std::vector<std::size_t> order(L);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return n_experts[a] < n_experts[b]; });
  std::vector<std::uint32_t> sizes(L, 0);
  std::uint64_t left = n;
  for (std::size_t j = 0; j < L; ++j) {  // smallest layers first: a full layer passes its share on
    const std::uint64_t share = left / (L - j);
    const auto n_j = static_cast<std::uint64_t>(n_experts[order[j]]);
    if (n_j <= share) {
      sizes[order[j]] = static_cast<std::uint32_t>(n_j);
      left -= n_j;
      continue;
    }
    // Every remaining layer has more experts than the share: each gets it, the first ones one more.
    std::vector<std::size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(j), order.end());
    std::sort(rest.begin(), rest.end());
    const std::uint64_t extra = left - share * (L - j);
    for (std::size_t r = 0; r < rest.size(); ++r)
      sizes[rest[r]] = static_cast<std::uint32_t>(share + (r < extra ? 1 : 0));
    break;
  }
  return sizes;
}

}  // namespace

PoolPlan plan_pools(const std::vector<int>& n_experts, std::uint64_t n_slots, int k) {
  PoolPlan plan;
  plan.n_slots = n_slots;
  const std::size_t L = n_experts.size();
  if (L == 0) return plan;
  if (n_slots >= L * static_cast<std::uint64_t>(k)) {
    plan.pool_sizes = per_layer_pools(n_experts, n_slots);
    plan.pool_of_layer.resize(L);
    std::iota(plan.pool_of_layer.begin(), plan.pool_of_layer.end(), 0);
  } else {
    plan.pool_sizes = {static_cast<std::uint32_t>(n_slots)};
    plan.pool_of_layer.assign(L, 0);
  }
  return plan;
}


SlotPools::SlotPools(const PoolPlan& plan, const std::vector<int>& n_experts)
    : slots_(plan.n_slots), pools_(plan.pool_sizes.size()), pool_of_layer_(plan.pool_of_layer) {
  std::uint32_t next = 0;
  for (std::size_t p = 0; p < pools_.size(); ++p) {
    pools_[p].size = plan.pool_sizes[p];
    for (std::uint32_t i = 0; i < plan.pool_sizes[p]; ++i) pools_[p].free.push_back(next + plan.pool_sizes[p] - 1 - i);
    next += plan.pool_sizes[p];
  }
  MF_ASSERT(next == plan.n_slots, "pools hold ", next, " of ", plan.n_slots, " slots");
  for (int n : n_experts) resident_.emplace_back(static_cast<std::size_t>(n), kNone);
}

std::int64_t SlotPools::find(int layer, int expert) {
  const std::int32_t slot = resident_[layer][expert];
  if (slot == kNone) return -1;
  Pool& pool = pools_[pool_of_layer_[layer]];
  unlink(pool, static_cast<std::uint32_t>(slot));
  push_newest(pool, static_cast<std::uint32_t>(slot));
  slots_[slot].pinned = epoch_;
  return slot;
}

std::uint32_t SlotPools::assign(int layer, int expert, bool* evicted) {
  MF_ASSERT(resident_[layer][expert] == kNone, "expert ", expert, " of layer ", layer, " is already resident");
  Pool& pool = pools_[pool_of_layer_[layer]];
  std::uint32_t slot = 0;
  *evicted = false;
  if (!pool.free.empty()) {
    slot = pool.free.back();
    pool.free.pop_back();
  } else {
    std::int32_t s = pool.oldest;
    while (s != kNone && slots_[s].pinned == epoch_) s = slots_[s].next;
    MF_ASSERT(s != kNone, "every slot of the pool of layer ", layer, " is pinned by this fetch");
    slot = static_cast<std::uint32_t>(s);
    unlink(pool, slot);
    resident_[slots_[slot].layer][slots_[slot].expert] = kNone;
    *evicted = true;
  }
  slots_[slot].layer = layer;
  slots_[slot].expert = expert;
  slots_[slot].pinned = epoch_;
  resident_[layer][expert] = static_cast<std::int32_t>(slot);
  push_newest(pool, slot);
  return slot;
}

void SlotPools::discard(std::uint32_t slot) {
  Slot& s = slots_[slot];
  MF_ASSERT(s.layer != kNone, "slot ", slot, " is already free");
  Pool& pool = pools_[pool_of_layer_[s.layer]];
  unlink(pool, slot);
  resident_[s.layer][s.expert] = kNone;
  s.layer = s.expert = kNone;
  s.pinned = 0;
  pool.free.push_back(slot);
}

std::vector<std::pair<int, int>> SlotPools::lru_order(int layer) const {
  std::vector<std::pair<int, int>> out;
  for (std::int32_t s = pools_[pool_of_layer_[layer]].oldest; s != kNone; s = slots_[s].next)
    out.emplace_back(slots_[s].layer, slots_[s].expert);
  return out;
}

void SlotPools::unlink(Pool& pool, std::uint32_t slot) {
  Slot& s = slots_[slot];
  (s.prev == kNone ? pool.oldest : slots_[s.prev].next) = s.next;
  (s.next == kNone ? pool.newest : slots_[s.next].prev) = s.prev;
  s.prev = s.next = kNone;
}

void SlotPools::push_newest(Pool& pool, std::uint32_t slot) {
  Slot& s = slots_[slot];
  s.prev = pool.newest;
  s.next = kNone;
  (pool.newest == kNone ? pool.oldest : slots_[pool.newest].next) = static_cast<std::int32_t>(slot);
  pool.newest = static_cast<std::int32_t>(slot);
}

}  // namespace moeflux::util

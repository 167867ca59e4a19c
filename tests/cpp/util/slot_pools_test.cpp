// The policy of both expert cache tiers: pool planning, LRU order per pool, pins of the current
// batch, discarded slots.
#include "moeflux/util/slot_pools.h"

#include <gtest/gtest.h>

#include "moeflux/util/error.h"

namespace moeflux::util {
namespace {

using Order = std::vector<std::pair<int, int>>;

PoolPlan plan_of(std::vector<std::uint32_t> pools, std::vector<int> pool_of_layer) {
  PoolPlan plan;
  for (std::uint32_t p : pools) plan.n_slots += p;
  plan.pool_sizes = std::move(pools);
  plan.pool_of_layer = std::move(pool_of_layer);
  return plan;
}

// One fetch of `experts` of `layer`: returns the evicted count; records nothing else.
int fetch(SlotPools& cache, int layer, std::vector<int> experts) {
  cache.begin_batch();
  std::vector<bool> hit;
  for (int e : experts) hit.push_back(cache.find(layer, e) >= 0);
  int evicted = 0;
  for (std::size_t i = 0; i < experts.size(); ++i) {
    bool ev = false;
    if (!hit[i]) cache.assign(layer, experts[i], &ev);
    evicted += ev ? 1 : 0;
  }
  return evicted;
}

TEST(SlotPools, EvictsTheLeastRecentlyUsedOfItsPool) {
  SlotPools cache(plan_of({3, 3}, {0, 1}), {8, 8});
  EXPECT_EQ(fetch(cache, 0, {1, 2, 3}), 0);
  EXPECT_EQ(fetch(cache, 1, {5}), 0);
  EXPECT_EQ(fetch(cache, 0, {2}), 0);  // a hit: 2 becomes most recent
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 1}, {0, 3}, {0, 2}}));
  EXPECT_EQ(fetch(cache, 0, {4}), 1);  // evicts 1
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 3}, {0, 2}, {0, 4}}));
  EXPECT_EQ(cache.find(0, 1), -1);
  EXPECT_EQ(cache.lru_order(1), (Order{{1, 5}}));  // the other layer's pool is untouched
}

TEST(SlotPools, SharedPoolEvictsAcrossLayers) {
  SlotPools cache(plan_of({2}, {0, 0}), {8, 8});
  fetch(cache, 0, {1});
  fetch(cache, 1, {1});
  EXPECT_EQ(fetch(cache, 1, {2}), 1);  // layer 0's expert 1 was oldest
  EXPECT_EQ(cache.lru_order(0), (Order{{1, 1}, {1, 2}}));
  EXPECT_EQ(cache.pool_size(0), 2u);
  EXPECT_EQ(cache.pool_size(1), 2u);
}

TEST(SlotPools, AFetchNeverEvictsItsOwnExperts) {
  SlotPools cache(plan_of({3}, {0}), {8});
  fetch(cache, 0, {0, 1, 2});
  cache.begin_batch();
  EXPECT_GE(cache.find(0, 0), 0);  // a hit: pinned and most recent
  bool evicted = false;
  cache.assign(0, 5, &evicted);
  EXPECT_TRUE(evicted);
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 2}, {0, 0}, {0, 5}}));
  cache.assign(0, 6, &evicted);
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 0}, {0, 5}, {0, 6}}));
  // The oldest, 0, is pinned by this fetch like the rest: a fourth expert is a caller's bug.
  EXPECT_THROW(cache.assign(0, 7, &evicted), InternalError);
  fetch(cache, 0, {7});  // the next fetch releases the pins: 0 goes
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 5}, {0, 6}, {0, 7}}));
}

TEST(SlotPools, DiscardedSlotIsFreeAndNeverAHit) {
  SlotPools cache(plan_of({2}, {0}), {8});
  cache.begin_batch();
  bool evicted = false;
  const std::uint32_t a = cache.assign(0, 3, &evicted);
  cache.assign(0, 4, &evicted);
  cache.discard(a);
  EXPECT_EQ(cache.find(0, 3), -1);
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 4}}));
  cache.begin_batch();
  cache.assign(0, 5, &evicted);  // takes the free slot, evicts nothing
  EXPECT_FALSE(evicted);
  EXPECT_GE(cache.find(0, 4), 0);
}

TEST(SlotPools, PoolsPerLayerOrOneShared) {
  const auto per_layer = plan_pools({8, 3, 8}, 12, 2);  // >= layers * k: per layer, 3 capped at its experts
  EXPECT_EQ(per_layer.pool_sizes, (std::vector<std::uint32_t>{5, 3, 4}));
  EXPECT_EQ(per_layer.pool_of_layer, (std::vector<int>{0, 1, 2}));
  const auto shared = plan_pools({8, 3, 8}, 5, 2);  // below layers * k: one shared pool
  EXPECT_EQ(shared.pool_sizes, (std::vector<std::uint32_t>{5}));
  EXPECT_EQ(shared.pool_of_layer, (std::vector<int>{0, 0, 0}));
}

TEST(SlotPools, LeastRecentlyUsedEvictedNeverPinned) {
  const std::vector<int> experts{6, 6};
  SlotPools slots(plan_pools(experts, 3, 2), experts);  // one shared pool of 3
  bool evicted = false;
  slots.begin_batch();
  EXPECT_EQ(slots.find(0, 1), -1);
  slots.assign(0, 1, &evicted);
  slots.assign(1, 2, &evicted);
  slots.begin_batch();
  slots.assign(0, 3, &evicted);
  EXPECT_FALSE(evicted);
  EXPECT_GE(slots.find(0, 1), 0);  // a hit: 1 becomes most recent
  EXPECT_EQ(slots.lru_order(0), (std::vector<std::pair<int, int>>{{1, 2}, {0, 3}, {0, 1}}));
  slots.begin_batch();
  EXPECT_GE(slots.find(0, 3), 0);   // pinned by this batch
  slots.assign(0, 4, &evicted);     // evicts (1, 2), the oldest
  EXPECT_TRUE(evicted);
  EXPECT_EQ(slots.find(1, 2), -1);
  slots.assign(1, 5, &evicted);     // (0, 3) and (0, 4) are pinned: (0, 1) goes
  EXPECT_TRUE(evicted);
  EXPECT_EQ(slots.lru_order(1), (std::vector<std::pair<int, int>>{{0, 3}, {0, 4}, {1, 5}}));
  EXPECT_EQ(slots.find(0, 1), -1);
}

}  // namespace
}  // namespace moeflux::util

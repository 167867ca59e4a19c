// The slot cache alone: LRU order per pool, pins of the current fetch, discarded slots.
#include "moeflux/experts/slot_cache.h"

#include <gtest/gtest.h>

#include "moeflux/util/error.h"

namespace moeflux::experts {
namespace {

using Order = std::vector<std::pair<int, int>>;

CachePlan plan_of(std::vector<std::uint32_t> pools, std::vector<int> pool_of_layer) {
  CachePlan plan;
  plan.slot_bytes = 4096;
  for (std::uint32_t p : pools) plan.n_slots += p;
  plan.pool_sizes = std::move(pools);
  plan.pool_of_layer = std::move(pool_of_layer);
  return plan;
}

// One fetch of `experts` of `layer`: returns the evicted count; records nothing else.
int fetch(SlotCache& cache, int layer, std::vector<int> experts) {
  cache.begin_fetch();
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

TEST(SlotCache, EvictsTheLeastRecentlyUsedOfItsPool) {
  SlotCache cache(plan_of({3, 3}, {0, 1}), {8, 8});
  EXPECT_EQ(fetch(cache, 0, {1, 2, 3}), 0);
  EXPECT_EQ(fetch(cache, 1, {5}), 0);
  EXPECT_EQ(fetch(cache, 0, {2}), 0);  // a hit: 2 becomes most recent
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 1}, {0, 3}, {0, 2}}));
  EXPECT_EQ(fetch(cache, 0, {4}), 1);  // evicts 1
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 3}, {0, 2}, {0, 4}}));
  EXPECT_EQ(cache.find(0, 1), -1);
  EXPECT_EQ(cache.lru_order(1), (Order{{1, 5}}));  // the other layer's pool is untouched
}

TEST(SlotCache, SharedPoolEvictsAcrossLayers) {
  SlotCache cache(plan_of({2}, {0, 0}), {8, 8});
  fetch(cache, 0, {1});
  fetch(cache, 1, {1});
  EXPECT_EQ(fetch(cache, 1, {2}), 1);  // layer 0's expert 1 was oldest
  EXPECT_EQ(cache.lru_order(0), (Order{{1, 1}, {1, 2}}));
  EXPECT_EQ(cache.pool_size(0), 2u);
  EXPECT_EQ(cache.pool_size(1), 2u);
}

TEST(SlotCache, AFetchNeverEvictsItsOwnExperts) {
  SlotCache cache(plan_of({3}, {0}), {8});
  fetch(cache, 0, {0, 1, 2});
  cache.begin_fetch();
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

TEST(SlotCache, DiscardedSlotIsFreeAndNeverAHit) {
  SlotCache cache(plan_of({2}, {0}), {8});
  cache.begin_fetch();
  bool evicted = false;
  const std::uint32_t a = cache.assign(0, 3, &evicted);
  cache.assign(0, 4, &evicted);
  cache.discard(a);
  EXPECT_EQ(cache.find(0, 3), -1);
  EXPECT_EQ(cache.lru_order(0), (Order{{0, 4}}));
  cache.begin_fetch();
  cache.assign(0, 5, &evicted);  // takes the free slot, evicts nothing
  EXPECT_FALSE(evicted);
  EXPECT_GE(cache.find(0, 4), 0);
}

}  // namespace
}  // namespace moeflux::experts

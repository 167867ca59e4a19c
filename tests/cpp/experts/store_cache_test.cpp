// The store's cache behaviour: hits and misses, per-layer and shared pools, LRU eviction, budgets,
// statistics, and no read of an expert that is already resident.
#include <gtest/gtest.h>

#include "experts/store_fixtures.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {
namespace {

class StoreCache : public ::testing::Test {
 protected:
  void SetUp() override {
    manifest_ = testing::write_model(dir_.path(), testing::default_layers());
    model_ = format::PackedModel::open(dir_.path());
    slot_ = ExpertStore::min_cache_bytes(*model_, 1);
  }
  // A store whose fault injector counts the reads it is asked about.
  std::unique_ptr<ExpertStore> open(std::uint64_t cache_bytes, int k = 2, IoMode io = IoMode::direct) {
    StoreOptions options;
    options.cache_bytes = cache_bytes;
    options.experts_per_token = k;
    options.io = io;
    options.fault_injector = [this](int, int) {
      ++reads_;
      return 0;
    };
    return std::make_unique<ExpertStore>(model_, options);
  }
  void fetch(ExpertStore& store, int layer, std::vector<std::int32_t> experts) {
    const auto records = store.fetch(layer, experts);
    const auto& entry = *model_->expert_layer(layer);
    for (const auto& r : records) EXPECT_TRUE(testing::record_matches(r, entry));
  }

  testing::TempDir dir_;
  format::Manifest manifest_;
  std::shared_ptr<const format::PackedModel> model_;
  std::uint64_t slot_ = 0;
  int reads_ = 0;
};

TEST_F(StoreCache, SlotsAreTheLargestStride) {
  EXPECT_EQ(slot_, 12288u);  // layer 0 and 3: three 4 KiB blocks; layer 2's records take 8 KiB
  auto store = open(0);
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.slot_bytes, 12288u);
  EXPECT_EQ(stats.slots, 17u);  // 0: room for every expert (6 + 5 + 6)
  EXPECT_EQ(stats.cache_bytes, 17u * 12288u);
  EXPECT_EQ(store->capacity(0), 6);
  EXPECT_EQ(store->capacity(2), 5);
}

TEST_F(StoreCache, ResidentExpertsAreNotReadAgain) {
  auto store = open(0);
  fetch(*store, 0, {1, 3, 4});
  EXPECT_EQ(reads_, 3);
  fetch(*store, 0, {1, 3, 4});
  fetch(*store, 0, {3});
  EXPECT_EQ(reads_, 3);
  fetch(*store, 0, {0, 3, 5});  // only the two new ones are read
  EXPECT_EQ(reads_, 5);
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.misses, 5u);
  EXPECT_EQ(stats.hits, 5u);
  EXPECT_EQ(stats.bytes_read, 5u * 12288u);
  EXPECT_EQ(stats.evictions, 0u);
}

TEST_F(StoreCache, BudgetForEverythingReadsEachExpertOnce) {
  auto store = open(0);
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& entry : manifest_.expert_layers) {
      for (int e = entry.n_experts - 1; e >= 0; --e) fetch(*store, entry.layer, {e});
    }
  }
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.misses, 17u);
  EXPECT_EQ(stats.hits, 17u);
  EXPECT_EQ(stats.bytes_read, 12u * 12288u + 5u * 8192u);
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(reads_, 17);
  EXPECT_GE(stats.read_wait_seconds, 0.0);
}

TEST_F(StoreCache, PerLayerPoolsEvictTheirOwnLeastRecentlyUsed) {
  auto store = open(slot_ * 6, 1);  // 6 slots >= 3 layers x k=1: pools of 2 per layer
  EXPECT_EQ(store->capacity(0), 2);
  fetch(*store, 0, {0});
  fetch(*store, 0, {1});
  fetch(*store, 2, {0});
  fetch(*store, 2, {1});
  fetch(*store, 0, {0});  // hit; 1 is now layer 0's oldest
  fetch(*store, 0, {2});  // evicts layer 0's expert 1, nothing of layer 2
  EXPECT_EQ(store->stats().evictions, 1u);
  reads_ = 0;
  fetch(*store, 0, {0, 2});
  fetch(*store, 2, {0, 1});
  EXPECT_EQ(reads_, 0);
  fetch(*store, 0, {1});
  EXPECT_EQ(reads_, 1);
}

TEST_F(StoreCache, SharedPoolBelowOneTopKPerLayer) {
  auto store = open(slot_ * 5, 2);  // 5 slots < 3 layers x k=2: one pool for all
  EXPECT_EQ(store->capacity(0), 5);
  EXPECT_EQ(store->capacity(2), 5);
  EXPECT_EQ(store->stats().slots, 5u);
  fetch(*store, 0, {0, 1, 2, 3, 4});  // a prefill batch may use the whole pool
  fetch(*store, 3, {0, 1});           // evicts layer 0's two oldest
  EXPECT_EQ(store->stats().evictions, 2u);
  reads_ = 0;
  fetch(*store, 0, {2, 3, 4});
  EXPECT_EQ(reads_, 0);
  fetch(*store, 0, {0});
  EXPECT_EQ(reads_, 1);
}

TEST_F(StoreCache, BudgetBelowTopKIsRefusedAtOpen) {
  EXPECT_THROW_WITH(open(slot_ * 3 - 1, 3), BudgetError, "holds 2 expert records of 12288 bytes",
                    "top-k needs 3", "smallest budget that works is 36864 bytes (1 MiB)");
  EXPECT_EQ(ExpertStore::min_cache_bytes(*model_, 3), 36864u);
  EXPECT_NO_THROW(open(slot_ * 3, 3));
}

TEST_F(StoreCache, ResetStatsKeepsTheCache) {
  auto store = open(0);
  fetch(*store, 3, {2, 5});
  store->reset_stats();
  StoreStats stats = store->stats();
  EXPECT_EQ(stats.misses + stats.hits + stats.bytes_read + stats.evictions, 0u);
  EXPECT_EQ(stats.read_wait_seconds, 0.0);
  EXPECT_EQ(stats.slots, 17u);
  EXPECT_EQ(stats.io, "direct");
  fetch(*store, 3, {2, 5});
  EXPECT_EQ(store->stats().hits, 2u);
}

TEST_F(StoreCache, ThroughputIsBytesOverWait) {
  StoreStats stats;
  EXPECT_EQ(stats.read_bytes_per_second(), 0.0);
  stats.bytes_read = 3000;
  stats.read_wait_seconds = 1.5;
  EXPECT_DOUBLE_EQ(stats.read_bytes_per_second(), 2000.0);
}

TEST_F(StoreCache, BadFetchesAreBugsOfTheCaller) {
  auto store = open(slot_ * 6, 1);
  const std::vector<std::int32_t> unsorted{2, 1}, outside{6}, too_many{0, 1, 2};
  EXPECT_THROW(store->fetch(0, unsorted), InternalError);
  EXPECT_THROW(store->fetch(0, outside), InternalError);
  EXPECT_THROW(store->fetch(0, too_many), InternalError);
  EXPECT_THROW(store->fetch(1, std::vector<std::int32_t>{0}), InternalError);  // layer 1 is dense
  fetch(*store, 0, {0, 1});
}

}  // namespace
}  // namespace moeflux::experts

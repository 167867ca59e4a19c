// How budgets become slots and pools: the minimum, per-layer versus shared pools, the caps.
#include "moeflux/experts/cache_plan.h"

#include <gtest/gtest.h>

#include <numeric>

#include "experts/store_fixtures.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {
namespace {

using testing::LayerSpec;

// A manifest of `layers` MoE layers of `n_experts` experts with the given strides (no files).
format::Manifest manifest_with(std::vector<std::pair<int, std::uint64_t>> experts_and_strides) {
  format::Manifest m;
  int layer = 0;
  for (const auto& [n_experts, stride] : experts_and_strides) {
    format::ExpertLayerEntry entry;
    entry.layer = layer++;
    entry.n_experts = n_experts;
    entry.stride = stride;
    m.expert_layers.push_back(entry);
  }
  return m;
}

constexpr std::uint64_t kPage = 4096;

TEST(CachePlan, SlotsAreTheLargestStride) {
  const auto m = manifest_with({{8, 3 * kPage}, {8, 5 * kPage}, {8, 2 * kPage}});
  const CachePlan plan = plan_cache(m, 0, 2);
  EXPECT_EQ(plan.slot_bytes, 5 * kPage);
  EXPECT_EQ(plan.n_slots, 24u);  // 0: a slot for every expert
  EXPECT_EQ(min_cache_bytes(m, 2), 10 * kPage);
}

TEST(CachePlan, BudgetBelowTopKIsRefusedWithTheMinimum) {
  const auto m = manifest_with({{8, 256 * kPage}, {8, 256 * kPage}});  // 1 MiB records
  const std::uint64_t minimum = 4 * 256 * kPage;
  EXPECT_THROW_WITH(plan_cache(m, minimum - 1, 4), BudgetError, "[open_expert_store]",
                    "cache_bytes=" + std::to_string(minimum - 1), "holds 3 expert records of 1048576 bytes",
                    "top-k needs 4", "smallest budget that works is " + std::to_string(minimum) + " bytes (4 MiB)");
  EXPECT_THROW_WITH(plan_cache(m, 1, 1), BudgetError, "holds 0 expert records", "is 1048576 bytes (1 MiB)");
  EXPECT_EQ(plan_cache(m, minimum, 4).n_slots, 4u);
}

TEST(CachePlan, MinimumMebibytesRoundUp) {
  const auto m = manifest_with({{8, 3 * kPage}});
  EXPECT_THROW_WITH(plan_cache(m, kPage, 2), BudgetError, "is 24576 bytes (1 MiB)");
}

TEST(CachePlan, TopKOutsideTheExpertsIsAConfigError) {
  const auto m = manifest_with({{8, kPage}, {4, kPage}});
  EXPECT_THROW_WITH(plan_cache(m, 0, 5), ConfigError, "experts_per_token=5", "layer 1 has only 4 experts");
  EXPECT_THROW_WITH(plan_cache(m, 0, 0), ConfigError, "experts_per_token=0");
}

TEST(CachePlan, SharedPoolBelowOneTopKPerLayer) {
  const auto m = manifest_with({{8, kPage}, {8, kPage}, {8, kPage}});
  const CachePlan plan = plan_cache(m, 5 * kPage, 2);  // 5 slots < 3 layers x 2
  EXPECT_EQ(plan.n_slots, 5u);
  EXPECT_EQ(plan.pool_sizes, std::vector<std::uint32_t>{5});
  EXPECT_EQ(plan.pool_of_layer, (std::vector<int>{0, 0, 0}));
}

TEST(CachePlan, PerLayerPoolsGiveLeftoversToTheFirstLayers) {
  const auto m = manifest_with({{8, kPage}, {8, kPage}, {8, kPage}});
  const CachePlan plan = plan_cache(m, 8 * kPage + 100, 2);  // 8 slots >= 3 x 2
  EXPECT_EQ(plan.n_slots, 8u);
  EXPECT_EQ(plan.pool_sizes, (std::vector<std::uint32_t>{3, 3, 2}));
  EXPECT_EQ(plan.pool_of_layer, (std::vector<int>{0, 1, 2}));
}

TEST(CachePlan, PoolsNeverExceedTheirLayersExperts) {
  const auto m = manifest_with({{16, kPage}, {3, kPage}, {16, kPage}});
  const CachePlan plan = plan_cache(m, 30 * kPage, 2);  // layer 1 caps at 3; its share goes to the others
  EXPECT_EQ(plan.pool_sizes, (std::vector<std::uint32_t>{14, 3, 13}));
  const CachePlan all = plan_cache(m, 1000 * kPage, 2);  // more than every expert: no unused slots
  EXPECT_EQ(all.n_slots, 35u);
  EXPECT_EQ(all.pool_sizes, (std::vector<std::uint32_t>{16, 3, 16}));
}

TEST(CachePlan, ModelWithoutExpertsNeedsNoSlots) {
  const CachePlan plan = plan_cache(format::Manifest{}, 0, 8);
  EXPECT_EQ(plan.n_slots, 0u);
  EXPECT_EQ(min_cache_bytes(format::Manifest{}, 8), 0u);
}

}  // namespace
}  // namespace moeflux::experts

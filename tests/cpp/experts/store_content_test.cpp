// Every record the store returns is byte-exact, whatever the budget, the read path and the queue
// depth: the cache decides only where bytes come from.
#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "experts/store_fixtures.h"
#include "moeflux/experts/expert_store.h"

namespace moeflux::experts {
namespace {

using testing::record_matches;

enum class Budget { everything, minimum, one_topk_per_layer, half };

std::uint64_t budget_bytes(Budget budget, const format::PackedModel& model, int k) {
  const std::uint64_t slot = ExpertStore::min_cache_bytes(model, 1);
  switch (budget) {
    case Budget::everything: return 0;
    case Budget::minimum: return ExpertStore::min_cache_bytes(model, k);
    case Budget::one_topk_per_layer: return slot * static_cast<std::uint64_t>(k) * 3;
    case Budget::half: return slot * 8 + slot / 2;
  }
  return 0;
}

class StoreContent : public ::testing::TestWithParam<std::tuple<Budget, IoMode, unsigned>> {};

TEST_P(StoreContent, EveryRecordIsByteExact) {
  const auto [budget, io, depth] = GetParam();
  testing::TempDir dir;
  const format::Manifest manifest = testing::write_model(dir.path(), testing::default_layers());
  const auto model = format::PackedModel::open(dir.path());
  const int k = 2;
  StoreOptions options;
  options.cache_bytes = budget_bytes(budget, *model, k);
  options.io = io;
  options.experts_per_token = k;
  options.queue_depth = depth;
  ExpertStore store(model, options);
  EXPECT_EQ(store.stats().io, io == IoMode::direct ? "direct" : "buffered");

  std::mt19937 rng(1234);
  std::uint64_t requested = 0;
  for (int token = 0; token < 24; ++token) {
    for (const format::ExpertLayerEntry& entry : manifest.expert_layers) {
      // Every expert of the layer now and then, else a random subset as big as the capacity allows.
      std::vector<std::int32_t> experts;
      const int capacity = store.capacity(entry.layer);
      for (int e = 0; e < entry.n_experts; ++e) {
        if (static_cast<int>(experts.size()) < capacity && (token % 5 == 0 || rng() % 2 == 0)) experts.push_back(e);
      }
      if (experts.empty()) experts.push_back(static_cast<std::int32_t>(rng() % static_cast<unsigned>(entry.n_experts)));
      const auto records = store.fetch(entry.layer, experts);
      requested += experts.size();
      ASSERT_EQ(records.size(), experts.size());
      for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].expert, experts[i]);
        EXPECT_TRUE(record_matches(records[i], entry)) << "token " << token;
      }
    }
  }
  const StoreStats stats = store.stats();
  EXPECT_EQ(stats.hits + stats.misses, requested);
  EXPECT_EQ(stats.io, io == IoMode::direct ? "direct" : "buffered");
}

std::string param_name(const ::testing::TestParamInfo<StoreContent::ParamType>& param) {
  static const char* const budgets[] = {"everything", "minimum", "one_topk_per_layer", "half"};
  const auto [budget, io, depth] = param.param;
  return std::string(budgets[static_cast<int>(budget)]) + (io == IoMode::direct ? "_direct" : "_buffered") + "_qd" +
         std::to_string(depth);
}

INSTANTIATE_TEST_SUITE_P(BudgetsAndPaths, StoreContent,
                         ::testing::Combine(::testing::Values(Budget::everything, Budget::minimum,
                                                              Budget::one_topk_per_layer, Budget::half),
                                            ::testing::Values(IoMode::direct, IoMode::buffered),
                                            ::testing::Values(1u, 3u, 64u)),
                         param_name);

TEST(StoreContent, ViewsStayValidUntilTheNextFetch) {
  testing::TempDir dir;
  const format::Manifest manifest = testing::write_model(dir.path(), testing::default_layers());
  const auto model = format::PackedModel::open(dir.path());
  StoreOptions options;
  options.experts_per_token = 2;
  options.cache_bytes = ExpertStore::min_cache_bytes(*model, 2);  // two slots, shared by every layer
  ExpertStore store(model, options);
  const std::vector<std::int32_t> experts{1, 4};
  const auto first = store.fetch(0, experts);
  const auto again = store.fetch(0, experts);  // hits: the same slots, still intact
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first[i].blocks[0].data, again[i].blocks[0].data);
    EXPECT_TRUE(record_matches(first[i], manifest.expert_layers[0]));
  }
  EXPECT_EQ(store.stats().hits, 2u);
}

}  // namespace
}  // namespace moeflux::experts

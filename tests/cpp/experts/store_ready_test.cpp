// fetch's on_ready: every record handed over exactly once with its bytes in place (hits first,
// misses as their reads land), failed reads never announced and still raising their typed errors,
// and a throwing on_ready rethrown after every read finished, leaving the store consistent.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <stdexcept>
#include <vector>

#include "experts/store_fixtures.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/util/error.h"

namespace moeflux::experts {
namespace {

class StoreReady : public testing::FaultyStoreTest {
 protected:
  // Fewer reads in flight than most fetches' misses: reads land while others wait.
  std::unique_ptr<ExpertStore> open(std::uint64_t cache_bytes = 0) { return FaultyStoreTest::open(cache_bytes, 2); }
  // Fetches with on_ready; checks each announced record's bytes when announced. Returns the
  // experts in the order announced.
  std::vector<std::int32_t> fetch(ExpertStore& store, int layer, const std::vector<std::int32_t>& experts) {
    std::vector<std::int32_t> order;
    const auto& entry = *model_->expert_layer(layer);
    const auto records = store.fetch(layer, experts, [&](std::size_t index, const ExpertRecord& record) {
      EXPECT_LT(index, experts.size());
      EXPECT_EQ(record.expert, experts[index]);
      EXPECT_TRUE(testing::record_matches(record, entry));
      order.push_back(record.expert);
    });
    EXPECT_EQ(records.size(), experts.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].expert, experts[i]);
      EXPECT_TRUE(testing::record_matches(records[i], entry));
    }
    return order;
  }
};

std::vector<std::int32_t> sorted(std::vector<std::int32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_P(StoreReady, EveryRecordIsAnnouncedOnceHitsFirst) {
  auto store = open();
  EXPECT_EQ(sorted(fetch(*store, 0, {0, 2, 3, 5})), (std::vector<std::int32_t>{0, 2, 3, 5}));
  // 2 and 5 are hits now: announced before any miss lands.
  const std::vector<std::int32_t> order = fetch(*store, 0, {1, 2, 4, 5});
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(sorted({order[0], order[1]}), (std::vector<std::int32_t>{2, 5}));
  EXPECT_EQ(sorted({order[2], order[3]}), (std::vector<std::int32_t>{1, 4}));
  // Only hits: announced at once.
  EXPECT_EQ(fetch(*store, 0, {1, 2, 3}), (std::vector<std::int32_t>{1, 2, 3}));
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.hits, 5u);
  EXPECT_EQ(stats.misses, 6u);
  EXPECT_EQ(stats.bytes_read, 6u * manifest_.expert_layers[0].stride);
}

TEST_P(StoreReady, CountsAsFetchWithoutIt) {
  // The same fetches with and without on_ready through a small cache: the same statistics.
  const std::uint64_t budget = ExpertStore::min_cache_bytes(*model_, 2) + 2 * 12288;
  auto with = open(budget), without = open(budget);
  const std::vector<std::pair<int, std::vector<std::int32_t>>> steps{
      {0, {0, 1}}, {2, {3, 4}}, {0, {1, 5}}, {3, {0, 2}}, {0, {0, 5}}, {2, {1, 3}}, {3, {2, 4}}, {0, {2, 3}}};
  for (const auto& [layer, experts] : steps) {
    EXPECT_EQ(sorted(fetch(*with, layer, experts)), experts);
    for (const auto& r : without->fetch(layer, experts))
      EXPECT_TRUE(testing::record_matches(r, *model_->expert_layer(layer)));
  }
  const StoreStats a = with->stats(), b = without->stats();
  EXPECT_EQ(a.hits, b.hits);
  EXPECT_EQ(a.misses, b.misses);
  EXPECT_EQ(a.evictions, b.evictions);
  EXPECT_EQ(a.bytes_read, b.bytes_read);
  EXPECT_GT(a.evictions, 0u);
  EXPECT_GT(a.hits, 0u);
}

TEST_P(StoreReady, FailedReadIsNeverAnnouncedAndStillThrows) {
  auto store = open();
  fetch(*store, 2, {0});
  faults_[{2, 3}] = EIO;
  std::vector<std::int32_t> announced;
  const std::vector<std::int32_t> experts{0, 1, 3, 4};
  EXPECT_THROW_WITH(store->fetch(2, experts,
                                 [&](std::size_t index, const ExpertRecord& record) {
                                   EXPECT_TRUE(testing::record_matches(record, *model_->expert_layer(2)));
                                   announced.push_back(experts[index]);
                                 }),
                    IoError, "[fetch_experts] reading expert 3 of layer 2", "Input/output error (errno 5)");
  EXPECT_EQ(sorted(announced), (std::vector<std::int32_t>{0, 1, 4}));
  faults_.clear();
  // Consistent: 1 and 4 were read and stay cached, 3 was never cached.
  const StoreStats before = store->stats();
  EXPECT_EQ(sorted(fetch(*store, 2, experts)), experts);
  EXPECT_EQ(store->stats().misses - before.misses, 1u);
  EXPECT_EQ(store->stats().hits - before.hits, 3u);

  // A file cut inside a record: FormatError as without on_ready.
  const std::string path = model_->expert_file_path(*model_->expert_layer(0));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(4 * manifest_.expert_layers[0].stride + 100)), 0);
  announced.clear();
  EXPECT_THROW_WITH(store->fetch(0, std::vector<std::int32_t>{1, 4},
                                 [&](std::size_t index, const ExpertRecord&) { announced.push_back(index == 0 ? 1 : 4); }),
                    FormatError, "ended inside expert 4 of layer 0");
  EXPECT_EQ(announced, (std::vector<std::int32_t>{1}));
}

struct UploadFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST_P(StoreReady, ThrowingOnReadyIsRethrownAfterEveryReadAndCachesNothingHalfWay) {
  auto store = open();
  fetch(*store, 3, {5});
  int calls = 0;
  const std::vector<std::int32_t> experts{0, 1, 2, 3, 5};
  EXPECT_THROW(store->fetch(3, experts,
                            [&](std::size_t, const ExpertRecord&) {
                              if (++calls == 2) throw UploadFailed("upload failed");
                            }),
               UploadFailed);
  EXPECT_EQ(calls, 2);  // not called again after it threw
  const StoreStats after_throw = store->stats();
  EXPECT_EQ(after_throw.bytes_read, 5u * manifest_.expert_layers[2].stride);  // every read ran to its end
  // None of the failed fetch's misses stayed cached; the hit did; the bytes are right.
  EXPECT_EQ(sorted(fetch(*store, 3, experts)), experts);
  EXPECT_EQ(store->stats().misses - after_throw.misses, 4u);
  EXPECT_EQ(store->stats().hits - after_throw.hits, 1u);
  // A throw while only hits are announced (no read in flight) leaves the store as usable.
  EXPECT_THROW(store->fetch(3, std::vector<std::int32_t>{0, 1},
                            [](std::size_t, const ExpertRecord&) { throw UploadFailed("again"); }),
               UploadFailed);
  EXPECT_EQ(sorted(fetch(*store, 3, {0, 1})), (std::vector<std::int32_t>{0, 1}));
}

INSTANTIATE_TEST_SUITE_P(BothPaths, StoreReady, ::testing::Values(IoMode::direct, IoMode::buffered),
                         testing::io_mode_name);

// A direct read refused with EINVAL is retried buffered: announced once, after the retry.
TEST(StoreReadyFallback, RefusedDirectReadsAreAnnouncedOnceAfterTheirRetry) {
  testing::RefusingStore s(3);  // every first read
  std::map<std::int32_t, int> announced;
  const std::vector<std::int32_t> experts{2, 4, 5};
  s.store->fetch(0, experts, [&](std::size_t index, const ExpertRecord& record) {
    EXPECT_TRUE(testing::record_matches(record, *s.model->expert_layer(0)));
    ++announced[experts[index]];
  });
  EXPECT_EQ(announced, (std::map<std::int32_t, int>{{2, 1}, {4, 1}, {5, 1}}));
  EXPECT_EQ(s.store->stats().io, "buffered");
  EXPECT_EQ(s.calls, 6);
}

}  // namespace
}  // namespace moeflux::experts

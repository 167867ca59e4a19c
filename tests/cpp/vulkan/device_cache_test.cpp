// The device tier of the expert cache (its policy: tests/cpp/util/slot_pools_test.cpp): budgets refused
// below k records, and moe_experts served from a tiny tier giving the bits of a full one, with
// hits, misses and evictions counted as the policy says; misses uploaded ahead (upload_expert, as
// reads land) computing and counting exactly as misses uploaded by moe_experts.
#include <algorithm>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/fixtures.h"
#include "moeflux/backend/vulkan/device_expert_cache.h"
#include "moeflux/util/error.h"
#include "named_experts.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// The distinct experts of a routing, ascending (as moe_experts takes them).
std::vector<std::int32_t> sorted_unique(std::vector<std::int32_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

using format::Dtype;

constexpr int kExperts = 5, kLayer = 3;

// kExperts experts of decoder layer kLayer.
struct Experts : NamedExperts {
  Experts(Dtype d, std::int64_t H, std::int64_t I) : NamedExperts(d, H, I, kExperts, kLayer, 1700) {}
};

// One step of T tokens, k experts each: token t's slot j takes expert (first + t * token_stride +
// 2 j) % kExperts. Its distinct experts ascending, random weights (from `seed`), the inputs x
// [T, H] (from seed + 100) and a poisoned out [T, H] on the backend.
struct Step {
  std::int64_t T;
  int k;
  std::vector<std::int32_t> ids, unique;
  std::vector<float> weights;
  Guarded x, out;
  Step(Backend& b, std::int64_t T_, int k_, std::int64_t H, unsigned first, unsigned token_stride, unsigned seed)
      : T(T_),
        k(k_),
        ids(routed_ids(T_, k_, first, token_stride)),
        unique(sorted_unique(ids)),
        weights(random_values(ids.size(), seed, 0.1f, 1.0f)),
        x(b, {T_, H}, random_values(static_cast<std::size_t>(T_ * H), seed + 100)),
        out(b, {T_, H}) {}
  // unique's experts [begin, begin + n), fewer at the end.
  std::span<const std::int32_t> batch(std::size_t begin, std::size_t n) const {
    return std::span(unique).subspan(begin, std::min(n, unique.size() - begin));
  }
  backend::MoeRouting routing(std::span<const std::int32_t> batch) const { return {T, k, ids, weights, batch}; }

 private:
  static std::vector<std::int32_t> routed_ids(std::int64_t T, int k, unsigned first, unsigned token_stride) {
    std::vector<std::int32_t> ids;
    for (std::int64_t t = 0; t < T; ++t) {
      for (int j = 0; j < k; ++j)
        ids.push_back(static_cast<std::int32_t>(
            (first + static_cast<unsigned>(t) * token_stride + static_cast<unsigned>(j) * 2) % kExperts));
    }
    return ids;
  }
};

// Steps of T tokens with k experts each (ascending unique lists), moe_experts over each in batches
// of `batch` experts; returns every step's output, concatenated.
std::vector<float> run_steps(Backend& b, const Experts& experts, int k, std::int64_t H, std::size_t batch) {
  std::vector<float> all;
  for (unsigned step = 0; step < 6; ++step) {
    const std::int64_t T = step % 2 == 0 ? 1 : 4;
    Step s(b, T, k, H, step * 2, 1, 1800 + step);
    for (std::size_t begin = 0; begin < s.unique.size(); begin += batch) {
      const auto sub = s.batch(begin, batch);
      b.moe_experts(s.x.tensor(), s.routing(sub), experts.weights(sub), s.out.tensor(), begin > 0);
    }
    s.out.expect_guards_intact("moe_experts");
    const std::vector<float> v = s.out.values();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

std::map<std::string, double> device_stats(const Backend& b) { return b.stats(); }

class VulkanDeviceCache : public VulkanParamTest<OpCase> {};

TEST_P(VulkanDeviceCache, TinyBudgetGivesTheBitsOfAFullOne) {
  const std::int64_t H = 96, I = 64;
  const int k = 2;
  const Experts experts(GetParam().dtype, H, I);
  const std::vector<float> uncached = run_steps(*gpu_, experts, k, H, kExperts);  // no tier: per-call uploads
  EXPECT_EQ(device_stats(*gpu_).count("device_slots"), 0u);  // no tier: only the recorder's counters
  const std::uint64_t slot = gpu_->expert_slot_bytes(experts.layout(k));
  ASSERT_GT(slot, 0u);
  for (const std::uint64_t budget : {std::uint64_t{0}, 3 * slot, k * slot + slot / 2}) {
    SCOPED_TRACE(util::concat("device budget ", budget));
    gpu_->configure_expert_cache(experts.layout(k), budget);
    for (const std::size_t batch : {std::size_t{1}, std::size_t{kExperts}}) {
      gpu_->reset_stats();
      expect_same_bits(run_steps(*gpu_, experts, k, H, batch), uncached, util::concat("batches of ", batch));
      const auto s = device_stats(*gpu_);
      EXPECT_EQ(s.at("device_slots"), budget == 0 ? kExperts : static_cast<double>(budget / slot));
      EXPECT_EQ(s.at("device_slot_bytes"), static_cast<double>(slot));
      EXPECT_EQ(s.at("device_bytes_uploaded") > 0, s.at("device_misses") > 0);
      if (budget == 0) {  // every expert fits: each uploaded at most once, never evicted
        EXPECT_LE(s.at("device_misses"), kExperts);
        EXPECT_EQ(s.at("device_evictions"), 0);
      } else {
        EXPECT_GT(s.at("device_evictions"), 0);
      }
    }
  }
  // All fit and warm: a rerun is all hits.
  gpu_->configure_expert_cache(experts.layout(k), 0);
  run_steps(*gpu_, experts, k, H, kExperts);
  gpu_->reset_stats();
  expect_same_bits(run_steps(*gpu_, experts, k, H, kExperts), uncached, "warm");
  EXPECT_EQ(device_stats(*gpu_).at("device_misses"), 0);
  EXPECT_EQ(device_stats(*gpu_).at("device_bytes_uploaded"), 0);
  EXPECT_GT(device_stats(*gpu_).at("device_hits"), 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanDeviceCache, ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16, Dtype::q4})),
                         op_case_name);

// The two ways moe_block gives moe_experts a device batch: the misses' bytes, uploaded by
// moe_experts itself; or each miss uploaded ahead by upload_expert as its read lands (here in
// reverse order, as reads may land), then marked held.
enum class Uploads { in_moe_experts, ahead };

struct Streamed {
  std::vector<std::vector<float>> outputs;                  // per step
  std::vector<std::map<std::string, double>> stats;         // per step, cumulative
  std::vector<std::vector<std::pair<int, int>>> lru;        // per step: the pool's recency order
};

Streamed run_streamed(backend::vk::VulkanBackend& b, const Experts& experts, int k, std::int64_t H, Uploads how) {
  Streamed result;
  const auto capacity = static_cast<std::size_t>(b.expert_capacity(kLayer));
  EXPECT_GE(capacity, static_cast<std::size_t>(k));
  for (unsigned step = 0; step < 10; ++step) {
    const std::int64_t T = step % 3 == 2 ? 3 : 1;
    Step s(b, T, k, H, step * 7, 3, 2800 + step);
    for (std::size_t begin = 0; begin < s.unique.size(); begin += capacity) {
      const auto batch = s.batch(begin, capacity);
      const std::vector<bool> held = b.experts_held(kLayer, batch);
      std::vector<backend::ExpertWeights> given = experts.weights(batch);
      if (how == Uploads::ahead) {
        b.begin_expert_uploads(kLayer, batch);
        for (std::size_t i = batch.size(); i-- > 0;) {
          if (held[i]) continue;
          EXPECT_TRUE(b.upload_expert(given[i]));
        }
        // Every expert of the batch is on the device now: the held ones were not evicted.
        const std::vector<bool> now = b.experts_held(kLayer, batch);
        EXPECT_TRUE(std::all_of(now.begin(), now.end(), [](bool h) { return h; })) << "step " << step;
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (held[i] || how == Uploads::ahead) given[i] = {{}, {}, {}, kLayer, batch[i], true};
      }
      b.moe_experts(s.x.tensor(), s.routing(batch), given, s.out.tensor(), begin > 0);
    }
    s.out.expect_guards_intact("moe_experts");
    result.outputs.push_back(s.out.values());
    result.stats.push_back(b.stats());
    result.lru.push_back(b.expert_cache()->slots().lru_order(0));
  }
  return result;
}

TEST_P(VulkanDeviceCache, UploadsAheadCountAndComputeAsUploadsInMoeExperts) {
  const std::int64_t H = 96, I = 64;
  const int k = 2;
  const Experts experts(GetParam().dtype, H, I);
  const std::uint64_t slot = gpu_->expert_slot_bytes(experts.layout(k));
  std::vector<float> want;  // every expert resident
  gpu_->configure_expert_cache(experts.layout(k), 0);
  for (const auto& o : run_streamed(*gpu_, experts, k, H, Uploads::in_moe_experts).outputs)
    want.insert(want.end(), o.begin(), o.end());
  for (const std::uint64_t budget : {std::uint64_t{3} * slot, std::uint64_t{4} * slot}) {
    SCOPED_TRACE(util::concat("device budget ", budget / slot, " slots"));
    gpu_->configure_expert_cache(experts.layout(k), budget);
    gpu_->reset_stats();
    const Streamed before = run_streamed(*gpu_, experts, k, H, Uploads::in_moe_experts);
    gpu_->configure_expert_cache(experts.layout(k), budget);
    gpu_->reset_stats();
    const Streamed ahead = run_streamed(*gpu_, experts, k, H, Uploads::ahead);
    std::vector<float> got;
    for (std::size_t step = 0; step < ahead.outputs.size(); ++step) {
      SCOPED_TRACE(util::concat("step ", step));
      expect_same_bits(ahead.outputs[step], before.outputs[step], "uploads ahead");
      got.insert(got.end(), ahead.outputs[step].begin(), ahead.outputs[step].end());
      for (const char* key : {"device_hits", "device_misses", "device_evictions", "device_bytes_uploaded"})
        EXPECT_EQ(ahead.stats[step].at(key), before.stats[step].at(key)) << key;
      EXPECT_EQ(ahead.lru[step], before.lru[step]);  // the same recency: later evictions agree too
    }
    expect_same_bits(got, want, "against every expert resident");
    // Self-consistent: every miss uploaded one record, whose bytes the first step shows.
    const auto& first = ahead.stats.front();
    const auto& last = ahead.stats.back();
    ASSERT_GT(first.at("device_misses"), 0);
    const double record = first.at("device_bytes_uploaded") / first.at("device_misses");
    EXPECT_GT(record, 0);
    EXPECT_LE(record, static_cast<double>(slot));
    EXPECT_EQ(last.at("device_bytes_uploaded"), last.at("device_misses") * record);
    EXPECT_GT(last.at("device_hits"), 0);
    EXPECT_GT(last.at("device_evictions"), 0);
    EXPECT_GT(last.at("device_upload_seconds"), 0);
  }
}

TEST_F(VulkanTest, UploadExpertOutsideATierOrABatch) {
  const Experts experts(Dtype::f32, 32, 16);
  const std::vector<std::int32_t> batch{1, 3};
  for (Backend* b : {static_cast<Backend*>(cpu_.get()), static_cast<Backend*>(gpu_.get())}) {
    b->begin_expert_uploads(kLayer, batch);
    EXPECT_FALSE(b->upload_expert(experts.weights(batch)[0])) << b->name();
  }
  gpu_->configure_expert_cache(experts.layout(2), 0);
  gpu_->begin_expert_uploads(kLayer, batch);
  const std::vector<std::int32_t> other{2};
  EXPECT_THROW_WITH(gpu_->upload_expert(experts.weights(other)[0]), ShapeError,
                    "expert 2 of layer 3 is not in the batch begun by begin_expert_uploads");
  EXPECT_TRUE(gpu_->upload_expert(experts.weights(batch)[1]));
  EXPECT_EQ(gpu_->stats().at("device_misses"), 1);
  // The batch given up (as on a read error): a later call that did not begin it counts a hit.
  const std::vector<std::int32_t> three{3}, ids{3};
  const std::vector<float> weight{1.0f};
  Guarded x(*gpu_, {1, 32}, random_values(32, 77)), out(*gpu_, {1, 32});
  const std::vector<backend::ExpertWeights> held{{{}, {}, {}, kLayer, 3, true}};
  gpu_->moe_experts(x.tensor(), {1, 1, ids, weight, three}, held, out.tensor(), false);
  EXPECT_EQ(gpu_->stats().at("device_hits"), 1);
  EXPECT_EQ(gpu_->stats().at("device_misses"), 1);
  EXPECT_THROW(gpu_->upload_expert(experts.weights(batch)[0]), ShapeError);  // no batch begun
}

TEST_F(VulkanTest, DeviceCacheBudgetBelowKRecordsIsRefused) {
  const Experts experts(Dtype::f32, 32, 16);
  const std::uint64_t slot = gpu_->expert_slot_bytes(experts.layout(2));
  try {
    gpu_->configure_expert_cache(experts.layout(2), 2 * slot - 1);
    FAIL() << "expected BudgetError";
  } catch (const BudgetError& e) {
    EXPECT_NE(std::string(e.what()).find("smallest device budget that works is " + std::to_string(2 * slot)),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(gpu_->configure_expert_cache(experts.layout(2), 2 * slot));
  EXPECT_EQ(gpu_->stats().at("device_slots"), 2);
  const backend::DeviceMemoryInfo m = gpu_->memory_info();
  EXPECT_GT(m.heap_bytes, 0u);
  EXPECT_GE(m.allocated_bytes, 2 * slot);
}

}  // namespace
}  // namespace moeflux::test

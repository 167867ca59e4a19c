// The prefill path of moe_experts (ops/moe_grouped.cpp, moe_grouped.comp) against the CPU backend:
// every weight dtype and bit width, groups of 32, 64 and 128 with bf16 and f16 scales, k = 1 and
// 8, skewed routing (an expert of one row, experts of several 64-row tiles whose last tile is not
// a multiple of 8 rows), output columns and K not multiples of the kernel's tiles and slices, input
// rows aligned for vec4 loads or not. Batches of experts, and a device tier of any budget, give
// the bits of one call.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "named_experts.h"
#include "moe_run.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using backend::ExpertWeights;
using backend::MoeRouting;
using format::Dtype;

constexpr double kRtol = 1e-5;  // relative to the largest |output|, as moe_test.cpp
constexpr int kExperts = 12;    // the last one is routed once, by token 0

struct Form {
  std::int64_t H, I;
  format::QuantParams quant;  // used by quantized dtypes
};

// Float experts: K and N off every multiple of the kernel's slices (32) and tiles (64, 128); H a
// multiple of 4 (vec4 weight loads), I not. Quantized: each group size, K a multiple of it.
std::vector<Form> forms(Dtype d) {
  if (!format::is_quantized(d)) return {{100, 70, {}}};
  const int bits = format::quant_bits(d);
  return {{160, 96, {bits, 32, Dtype::bf16}}, {192, 128, {bits, 64, Dtype::f16}}, {256, 128, {bits, 128, Dtype::bf16}}};
}

struct Experts {
  std::vector<StoredWeight> floats;
  std::vector<QuantizedWeight> quantized;
  Dtype dtype;

  Experts(Dtype d, const Form& f) : dtype(d) {
    for (int i = 0; i < 3 * kExperts; ++i) {
      const backend::Shape shape = i % 3 < 2 ? backend::Shape{f.I, f.H} : backend::Shape{f.H, f.I};
      const auto values = random_values(static_cast<std::size_t>(f.H * f.I), 2100 + static_cast<unsigned>(i), -0.5f, 0.5f);
      if (format::is_quantized(d)) {
        quantized.emplace_back(f.quant, shape, values);
      } else {
        floats.emplace_back(d, shape, values);
      }
    }
  }
  format::TensorView view(int i) const {
    const auto at = static_cast<std::size_t>(i);
    return format::is_quantized(dtype) ? quantized[at].view("experts.block") : floats[at].view();
  }
  std::vector<ExpertWeights> weights(std::span<const std::int32_t> ids) const {
    std::vector<ExpertWeights> out;
    for (const std::int32_t e : ids) out.push_back({view(3 * e), view(3 * e + 1), view(3 * e + 2)});
    return out;
  }
};

// Pairs routed to each expert.
std::vector<std::int64_t> rows_per_expert(const Routing& r) {
  std::vector<std::int64_t> n(kExperts, 0);
  for (const std::int32_t e : r.ids) ++n[static_cast<std::size_t>(e)];
  return n;
}

// k distinct experts per token drawn with weights 1 / (e + 1)^2 from all but the last expert,
// which only token 0 takes (its last slot).
Routing skewed_route(std::int64_t T, int k, unsigned seed) {
  Routing r(T, k, seed);
  std::mt19937 rng(seed);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> w(kExperts - 1);
    for (std::size_t e = 0; e < w.size(); ++e) w[e] = 1.0 / static_cast<double>((e + 1) * (e + 1));
    for (int j = 0; j < k; ++j) {
      if (t == 0 && j == k - 1) {
        r.ids.push_back(kExperts - 1);
        continue;
      }
      std::discrete_distribution<int> pick(w.begin(), w.end());
      const int e = pick(rng);
      w[static_cast<std::size_t>(e)] = 0.0;
      r.ids.push_back(e);
    }
  }
  r.ids_done();
  return r;
}

class VulkanMoeGrouped : public VulkanParamTest<OpCase> {};

TEST_P(VulkanMoeGrouped, MatchesCpuAndBatchesGiveTheSameBits) {
  unsigned seed = 2200;
  for (const Form& f : forms(GetParam().dtype)) {
    const Experts experts(GetParam().dtype, f);
    for (const int k : {1, 8}) {
      SCOPED_TRACE(util::concat("H=", f.H, " I=", f.I, " group ", f.quant.group_size, " k=", k));
      const std::int64_t T = k == 1 ? 200 : 150;
      const Routing r = skewed_route(T, k, ++seed);
      const std::vector<std::int64_t> rows = rows_per_expert(r);
      ASSERT_EQ(rows[kExperts - 1], 1);  // the routing holds what this test is for
      ASSERT_TRUE(std::any_of(rows.begin(), rows.end(), [](std::int64_t n) { return n > 64 && n % 8 != 0; }));
      const std::vector<float> x = random_values(static_cast<std::size_t>(T * f.H), ++seed);
      const std::vector<float> want = run_moe(*cpu_, experts, r, x, f.H, nullptr, kExperts, 37);
      for (const std::int64_t guard : {std::int64_t{37}, std::int64_t{40}}) {
        double dispatches = 0.0;
        const std::vector<float> got = run_moe(*gpu_, experts, r, x, f.H, nullptr, kExperts, guard, &dispatches);
        expect_near_largest(got, want, kRtol, util::concat("moe_experts, x at ", guard));
        if (GetParam().config.max_storage_range == 0) {
          EXPECT_EQ(dispatches, 3.0);  // the grouped path, one batch
        }
        if (guard == 37) continue;  // batches: once
        for (const std::size_t batch : {std::size_t{1}, std::size_t{5}}) {
          expect_same_bits(run_moe(*gpu_, experts, r, x, f.H, nullptr, batch, guard), got,
                           util::concat("batches of ", batch));
        }
      }
      const std::vector<float> init = random_values(x.size(), ++seed);
      expect_near_largest(run_moe(*gpu_, experts, r, x, f.H, &init, 5, 40), run_moe(*cpu_, experts, r, x, f.H, &init, 5, 40),
                        kRtol, "moe_experts accumulated onto out");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanMoeGrouped,
                         ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::q8, Dtype::q4,
                                                       Dtype::q3, Dtype::q2})),
                         op_case_name);

// A prefill through the device tier of the expert cache: any budget gives the bits of no tier.
class VulkanMoeGroupedDeviceTier : public VulkanParamTest<OpCase> {};

TEST_P(VulkanMoeGroupedDeviceTier, AnyBudgetGivesTheBitsOfNoTier) {
  const std::int64_t H = 96, I = 64, T = 40;
  const int k = 4, layer = 2;
  const NamedExperts experts(GetParam().dtype, H, I, kExperts, layer, 2300);
  const Routing r = skewed_route(T, k, 2301);
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * H), 2302);
  auto run = [&] {
    Guarded xt(*gpu_, {T, H}, x);
    Guarded out(*gpu_, {T, H});
    gpu_->moe_experts(xt.tensor(), r.view(r.unique), experts.weights(r.unique), out.tensor(), false);
    out.expect_guards_intact("moe_experts");
    return out.values();
  };
  const std::vector<float> uncached = run();
  const std::uint64_t slot = gpu_->expert_slot_bytes(experts.layout(k));
  for (const std::uint64_t budget : {std::uint64_t{0}, 5 * slot, k * slot}) {
    SCOPED_TRACE(util::concat("device budget ", budget));
    gpu_->configure_expert_cache(experts.layout(k), budget);
    expect_same_bits(run(), uncached, "through the device tier");
    expect_same_bits(run(), uncached, "through the device tier, again");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanMoeGroupedDeviceTier,
                         ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16, Dtype::q4})), op_case_name);

}  // namespace
}  // namespace moeflux::test

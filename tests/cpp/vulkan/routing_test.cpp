// Routing left on the device: route_softmax_topk against the host reference (backend/routing.h) on
// fresh logits with ties, several T, E and k, both normalisations (experts identical, weights
// near); and moe_experts_routed, run from that routing with every expert in the device tier,
// giving the bits of moe_experts with the routing downloaded (what a layer gets whatever the budget).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/backend/routing.h"
#include "moeflux/util/error.h"
#include "named_experts.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using backend::RouteOptions;
using format::Dtype;

struct Routed {
  std::vector<std::int32_t> experts;
  std::vector<float> weights;
};

// route_softmax_topk on b; the routing tensor poisoned first (guards checked).
Routed route_on(Backend& b, const std::vector<float>& logits, std::int64_t T, std::int64_t E, const RouteOptions& o) {
  Guarded l(b, {T, E}, logits);
  Guarded r(b, {T, 2 * static_cast<std::int64_t>(o.k)});
  b.route_softmax_topk(l.tensor(), o, r.tensor());
  r.expect_guards_intact("route_softmax_topk");
  Routed out{std::vector<std::int32_t>(static_cast<std::size_t>(T * o.k)), std::vector<float>(static_cast<std::size_t>(T * o.k))};
  backend::routing_from_tensor(r.values(), o.k, out.experts, out.weights);
  return out;
}

class VulkanRouting : public VulkanParamTest<OpCase> {};

TEST_P(VulkanRouting, SoftmaxTopkMatchesTheHostReference) {
  struct Dims {
    std::int64_t T, E;
    int k;
  };
  unsigned seed = 2100;
  for (const Dims d : {Dims{1, 5, 1}, Dims{3, 128, 8}, Dims{17, 513, 10}, Dims{2, 64, 64}}) {
    for (const bool normalize : {false, true}) {
      SCOPED_TRACE(util::concat("T=", d.T, " E=", d.E, " k=", d.k, normalize ? " normalized" : ""));
      std::vector<float> logits = random_values(static_cast<std::size_t>(d.T * d.E), ++seed, -4.0f, 4.0f);
      // Ties: the first token's experts 1 and 3 (and 0 and 2 where E allows) share a logit.
      if (d.E > 3) logits[3] = logits[1], logits[2] = logits[0];
      const RouteOptions o{d.k, normalize};
      std::vector<std::int32_t> experts(static_cast<std::size_t>(d.T * d.k));
      std::vector<float> weights(experts.size());
      backend::softmax_topk(logits, d.T, static_cast<int>(d.E), o, experts, weights);
      const Routed got = route_on(*gpu_, logits, d.T, d.E, o);
      EXPECT_EQ(got.experts, experts);
      expect_near_cpu(got.weights, weights, 1e-5, "weights");
      const Routed cpu = route_on(*cpu_, logits, d.T, d.E, o);
      EXPECT_EQ(cpu.experts, experts);
      expect_same_bits(cpu.weights, weights, "the CPU backend's weights");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRouting, ::testing::ValuesIn(op_cases()), op_case_name);

TEST_F(VulkanTest, RoutingBeyondTheShaderLimitsRunsOnTheHost) {
  const std::int64_t T = 2, E = 5000;
  const std::vector<float> logits = random_values(static_cast<std::size_t>(T * E), 2200);
  const RouteOptions o{3, true};
  const Routed gpu = route_on(*gpu_, logits, T, E, o), cpu = route_on(*cpu_, logits, T, E, o);
  EXPECT_EQ(gpu.experts, cpu.experts);
  expect_same_bits(gpu.weights, cpu.weights, "weights");
}

TEST_F(VulkanTest, RoutingShapesAreChecked) {
  Guarded l(*gpu_, {2, 8}, random_values(16, 2300));
  Guarded r(*gpu_, {2, 5});
  EXPECT_THROW(gpu_->route_softmax_topk(l.tensor(), {2, false}, r.tensor()), ShapeError);
  Guarded r9(*gpu_, {2, 18});
  EXPECT_THROW(gpu_->route_softmax_topk(l.tensor(), {9, false}, r9.tensor()), ShapeError);
}

constexpr int kExperts = 6, kLayer = 2;

// kExperts experts of decoder layer kLayer.
struct Experts : NamedExperts {
  Experts(Dtype d, std::int64_t H, std::int64_t I) : NamedExperts(d, H, I, kExperts, kLayer, 2400) {}
};

class VulkanRoutedExperts : public VulkanParamTest<OpCase> {};

TEST_P(VulkanRoutedExperts, GiveTheBitsOfTheHostPlannedPath) {
  const std::int64_t H = 96, I = 64;
  const int k = 3;
  const Experts experts(GetParam().dtype, H, I);
  std::vector<std::int32_t> all(kExperts);
  std::iota(all.begin(), all.end(), 0);
  gpu_->configure_expert_cache(experts.layout(k), 0);
  EXPECT_TRUE(gpu_->expert_cache_holds_all());
  EXPECT_FALSE(gpu_->can_route_on_device(kLayer, 1));  // nothing loaded yet
  gpu_->load_experts(experts.weights(all));
  EXPECT_TRUE(gpu_->can_route_on_device(kLayer, 1));
  EXPECT_FALSE(gpu_->can_route_on_device(kLayer + 1, 1));  // not a MoE layer of the tier
  EXPECT_FALSE(gpu_->can_route_on_device(kLayer, 9));      // many tokens: the host-planned path
  for (const std::int64_t T : {std::int64_t{1}, std::int64_t{4}}) {
    SCOPED_TRACE(util::concat("T=", T));
    const std::vector<float> logits = random_values(static_cast<std::size_t>(T * kExperts), 2500 + static_cast<unsigned>(T));
    Guarded l(*gpu_, {T, kExperts}, logits);
    Guarded routing(*gpu_, {T, 2 * k});
    gpu_->route_softmax_topk(l.tensor(), {k, true}, routing.tensor());
    Guarded x(*gpu_, {T, H}, random_values(static_cast<std::size_t>(T * H), 2600 + static_cast<unsigned>(T)));
    Guarded routed(*gpu_, {T, H});
    gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, routed.tensor());
    routed.expect_guards_intact("moe_experts_routed");

    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
    std::vector<float> weights(ids.size());
    backend::routing_from_tensor(routing.values(), k, ids, weights);
    std::vector<std::int32_t> unique = ids;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    Guarded planned(*gpu_, {T, H});
    gpu_->moe_experts(x.tensor(), {T, k, ids, weights, unique}, experts.weights(unique), planned.tensor(), false);
    expect_same_bits(routed.values(), planned.values(), "routed vs host-planned");
  }
  EXPECT_EQ(gpu_->stats().at("device_routed_layers"), 2);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRoutedExperts, ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16, Dtype::q4})),
                         op_case_name);

}  // namespace
}  // namespace moeflux::test

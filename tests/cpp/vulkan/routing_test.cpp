// Routing left on the device: route_softmax_topk against the host reference (backend/routing.h) on
// fresh logits with ties, several T, E and k, both normalisations (experts identical, weights
// near), on both sides of the shader's subgroup path (E <= 16 x subgroup size, k <= subgroup size:
// 128 and 8 on lavapipe's 8 lanes, 512 and 32 on 32) and on ties within and across lanes; and
// moe_experts_routed, run from that routing with every expert in the device tier, giving the bits
// of moe_experts with the routing downloaded (what a layer gets whatever the budget): for few
// tokens through the pair kernels, for many through the grouped kernels over the tier's table;
// into fresh rows and added into a residual; with the next layer's input norm folded in (FoldedNorm:
// out's bits unchanged, and out times the norm weight beside it, of every weight dtype).
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
  const Dims dims[] = {{1, 1, 1},   {1, 5, 1},   {3, 128, 8},   {9, 128, 1},  {40, 100, 8}, {5, 61, 7},
                       {2, 129, 8}, {3, 512, 8}, {3, 513, 8},   {17, 513, 10}, {4, 100, 9},  {2, 100, 32},
                       {2, 100, 33}, {2, 64, 64}};
  for (const Dims d : dims) {
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

TEST_P(VulkanRouting, TiesGoToTheLowerExpert) {
  const std::int64_t T = 3, E = 100;  // no multiple of a subgroup: the last slot is partly padding
  std::vector<float> logits = random_values(static_cast<std::size_t>(T * E), 2150, -4.0f, 2.0f);
  auto at = [&](std::int64_t t, std::int64_t e) -> float& { return logits[static_cast<std::size_t>(t * E + e)]; };
  for (std::int64_t e = 0; e < E; ++e) at(0, e) = 0.5f;  // token 0: every expert ties
  for (const std::int64_t e : {99, 69, 37, 13, 5}) at(1, e) = 3.0f;  // token 1: five tie at the top, lanes and slots apart
  at(2, 50) = 3.0f, at(2, 98) = at(2, 2) = 2.5f;  // token 2: a tie after the first choice
  const std::vector<std::vector<std::int32_t>> leading = {{0, 1, 2, 3, 4, 5, 6, 7}, {5, 13, 37, 69, 99}, {50, 2, 98}};
  for (const int k : {1, 8}) {
    for (const bool normalize : {false, true}) {
      SCOPED_TRACE(util::concat("k=", k, normalize ? " normalized" : ""));
      const RouteOptions o{k, normalize};
      const Routed got = route_on(*gpu_, logits, T, E, o);
      for (std::size_t t = 0; t < leading.size(); ++t) {
        for (std::size_t s = 0; s < std::min(leading[t].size(), static_cast<std::size_t>(k)); ++s) {
          EXPECT_EQ(got.experts[t * static_cast<std::size_t>(k) + s], leading[t][s]) << "token " << t << ", slot " << s;
        }
      }
      std::vector<std::int32_t> experts(got.experts.size());
      std::vector<float> weights(experts.size());
      backend::softmax_topk(logits, T, static_cast<int>(E), o, experts, weights);
      EXPECT_EQ(got.experts, experts);
      expect_near_cpu(got.weights, weights, 1e-5, "weights");
    }
  }
}

// Where E <= WG (256), the subgroup path adds the exps in the workgroup path's order: with k =
// subgroup size and k + 1 (the workgroup path, with subgroup sums), the probabilities agree bit for bit.
TEST_P(VulkanRouting, TheSubgroupPathAddsAsTheWorkgroupPath) {
  const auto& f = gpu_->device().features();
  const std::int64_t T = 5, E = 100;
  const int k = static_cast<int>(f.subgroup_size);
  if (!f.subgroup_arithmetic || k + 1 > E) GTEST_SKIP() << "no subgroup arithmetic, or subgroups of " << k;
  const std::vector<float> logits = random_values(static_cast<std::size_t>(T * E), 2160, -4.0f, 4.0f);
  const Routed sub = route_on(*gpu_, logits, T, E, {k, false});
  const Routed group = route_on(*gpu_, logits, T, E, {k + 1, false});
  for (std::int64_t t = 0; t < T; ++t) {
    SCOPED_TRACE(util::concat("token ", t));
    const auto first = [&](const auto& v, int n) { return std::vector(v.begin() + t * n, v.begin() + t * n + k); };
    EXPECT_EQ(first(sub.experts, k), first(group.experts, k + 1));
    expect_same_bits(first(sub.weights, k), first(group.weights, k + 1), "probabilities");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRouting, ::testing::ValuesIn(op_cases()), op_case_name);

// router: the normed x, the logits and the routing in one op. For few tokens with subgroups the
// router product's last workgroup routes (no moe_route dispatch), giving the bits of norm_matmul
// then route_softmax_topk; repeated calls (its counter back at 0 each time), more rows than
// workgroups (a device of 3 groups), and the CPU's routing.
class VulkanRouter : public VulkanParamTest<OpCase> {};

TEST_P(VulkanRouter, GivesTheBitsOfItsParts) {
  const std::int64_t H = 96;
  unsigned seed = 2800;
  for (const bool few_groups : {false, true}) {
    auto small = few_groups ? make_vulkan({.name = "3groups", .max_groups = 3}) : nullptr;
    backend::vk::VulkanBackend& gpu = few_groups ? *small : *gpu_;
    for (const std::int64_t E : {std::int64_t{6}, std::int64_t{100}}) {
      for (const std::int64_t T : {std::int64_t{1}, std::int64_t{3}, std::int64_t{8}, std::int64_t{9}}) {
        const int k = E > 6 ? 8 : 2;
        SCOPED_TRACE(util::concat(few_groups ? "3 groups, " : "", "E=", E, " T=", T, " k=", k));
        const StoredWeight w(GetParam().dtype, {E, H}, random_values(static_cast<std::size_t>(E * H), ++seed));
        const StoredWeight g(Dtype::bf16, {H}, random_values(static_cast<std::size_t>(H), ++seed, 0.5f, 1.5f));
        const std::vector<float> x = random_values(static_cast<std::size_t>(T * H), ++seed, -3.0f, 3.0f);
        const RouteOptions o{k, true};
        const backend::NormOptions norm{.eps = 1e-6f, .zero_centered = false};
        const Tensor wg = gpu.resident(w.view()), gg = gpu.resident(g.view());
        Guarded xg(gpu, {T, H}, x), logits(gpu, {T, E}), routing(gpu, {T, 2 * k}), normed(gpu, {T, H});
        const double before = gpu.stats().at("vk_dispatches");
        gpu.router(xg.tensor(), gg, norm, wg, o, logits.tensor(), routing.tensor(), normed.tensor());
        const double dispatches = gpu.stats().at("vk_dispatches") - before;
        for (const Guarded* out : {&logits, &routing, &normed}) out->expect_guards_intact("router");

        Guarded want_logits(gpu, {T, E}), want_routing(gpu, {T, 2 * k}), want_normed(gpu, {T, H});
        const Tensor ws[] = {wg};
        Tensor ys[] = {want_logits.tensor()};
        gpu.norm_matmul(xg.tensor(), gg, norm, ws, ys, &want_normed.tensor());
        gpu.route_softmax_topk(want_logits.tensor(), o, want_routing.tensor());
        expect_same_bits(logits.values(), want_logits.values(), "logits");
        expect_same_bits(routing.values(), want_routing.values(), "routing");
        expect_same_bits(normed.values(), want_normed.values(), "normed");
        const bool fused = T <= 8 && (few_groups || GetParam().config.subgroups);  // the 3-group device has subgroups
        EXPECT_EQ(dispatches, fused ? 2.0 : 3.0);

        Guarded xc(*cpu_, {T, H}, x), lc(*cpu_, {T, E}), rc(*cpu_, {T, 2 * k}), nc(*cpu_, {T, H});
        cpu_->router(xc.tensor(), cpu_->resident(g.view()), norm, cpu_->resident(w.view()), o, lc.tensor(), rc.tensor(),
                     nc.tensor());
        std::vector<std::int32_t> got_ids(static_cast<std::size_t>(T * k)), want_ids(got_ids.size());
        std::vector<float> got_w(got_ids.size()), want_w(got_ids.size());
        backend::routing_from_tensor(routing.values(), k, got_ids, got_w);
        backend::routing_from_tensor(rc.values(), k, want_ids, want_w);
        EXPECT_EQ(got_ids, want_ids);
        expect_near_cpu(got_w, want_w, 1e-4, "weights against the CPU");
      }
    }
    if (small) expect_no_validation_messages(*small);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRouter, ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16})), op_case_name);

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

class VulkanRoutedExperts : public VulkanParamTest<OpCase> {
 protected:
  // The device tier configured for `experts` with the routing's k, nothing loaded yet; returns
  // every expert's id.
  std::vector<std::int32_t> configure_tier(const Experts& experts, int k) {
    std::vector<std::int32_t> all(kExperts);
    std::iota(all.begin(), all.end(), 0);
    gpu_->configure_expert_cache(experts.layout(k), 0);
    return all;
  }
};

TEST_P(VulkanRoutedExperts, GiveTheBitsOfTheHostPlannedPath) {
  const std::int64_t H = 96, I = 64;
  const int k = 3;
  const Experts experts(GetParam().dtype, H, I);
  const std::vector<std::int32_t> all = configure_tier(experts, k);
  EXPECT_TRUE(gpu_->expert_cache_holds_all());
  EXPECT_FALSE(gpu_->can_route_on_device(kLayer, 1));  // nothing loaded yet
  gpu_->load_experts(experts.weights(all));
  EXPECT_TRUE(gpu_->can_route_on_device(kLayer, 1));
  EXPECT_FALSE(gpu_->can_route_on_device(kLayer + 1, 1));  // not a MoE layer of the tier
  // Many tokens: the grouped kernels, unless their rows would not fit a binding (64 KiB ones).
  const bool small = GetParam().config.max_storage_range > 0;
  EXPECT_EQ(gpu_->can_route_on_device(kLayer, 9), !small);
  int routed_calls = 0;
  // 1 and 4: pair kernels; 9, 70 and 150: grouped, with experts of one tile, of several tiles.
  for (const std::int64_t T : {std::int64_t{1}, std::int64_t{4}, std::int64_t{9}, std::int64_t{70}, std::int64_t{150}}) {
    SCOPED_TRACE(util::concat("T=", T));
    if (!gpu_->can_route_on_device(kLayer, T)) continue;
    ++routed_calls;
    const std::vector<float> logits = random_values(static_cast<std::size_t>(T * kExperts), 2500 + static_cast<unsigned>(T));
    Guarded l(*gpu_, {T, kExperts}, logits);
    Guarded routing(*gpu_, {T, 2 * k});
    gpu_->route_softmax_topk(l.tensor(), {k, true}, routing.tensor());
    Guarded x(*gpu_, {T, H}, random_values(static_cast<std::size_t>(T * H), 2600 + static_cast<unsigned>(T)));
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
    std::vector<float> weights(ids.size());
    backend::routing_from_tensor(routing.values(), k, ids, weights);
    std::vector<std::int32_t> unique = ids;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    // Into fresh rows, and added into a residual stream.
    const std::vector<float> residual = random_values(static_cast<std::size_t>(T * H), 2700 + static_cast<unsigned>(T));
    for (const bool accumulate : {false, true}) {
      SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
      Guarded routed(*gpu_, {T, H}, residual), planned(*gpu_, {T, H}, residual);
      gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, routed.tensor(), accumulate);
      routed.expect_guards_intact("moe_experts_routed");
      gpu_->moe_experts(x.tensor(), {T, k, ids, weights, unique}, experts.weights(unique), planned.tensor(), accumulate);
      expect_same_bits(routed.values(), planned.values(), "routed vs host-planned");
    }
  }
  EXPECT_EQ(routed_calls, small ? 2 : 5);
  EXPECT_EQ(gpu_->stats().at("device_routed_layers"), 2 * routed_calls);
}

TEST_P(VulkanRoutedExperts, FoldTheNextInputNorm) {
  const std::int64_t H = 96, I = 64;
  const int k = 3;
  const Experts experts(GetParam().dtype, H, I);
  gpu_->load_experts(experts.weights(configure_tier(experts, k)));
  EXPECT_FALSE(gpu_->folds_input_norm(0));
  EXPECT_TRUE(gpu_->folds_input_norm(1));
  EXPECT_TRUE(gpu_->folds_input_norm(8));
  EXPECT_FALSE(gpu_->folds_input_norm(9));  // the grouped kernels
  unsigned seed = 2800;
  for (const std::int64_t T : {std::int64_t{1}, std::int64_t{4}}) {
    Guarded l(*gpu_, {T, kExperts}, random_values(static_cast<std::size_t>(T * kExperts), ++seed));
    Guarded routing(*gpu_, {T, 2 * k});
    gpu_->route_softmax_topk(l.tensor(), {k, true}, routing.tensor());
    Guarded x(*gpu_, {T, H}, random_values(static_cast<std::size_t>(T * H), ++seed));
    const std::vector<float> residual = random_values(static_cast<std::size_t>(T * H), ++seed);
    Guarded plain(*gpu_, {T, H}, residual);
    gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, plain.tensor(), true);
    const std::vector<float> want = plain.values();
    for (const Dtype wdtype : {Dtype::f32, Dtype::bf16, Dtype::f16}) {
      for (const bool zero_centered : {false, true}) {
        SCOPED_TRACE(util::concat("T=", T, " weight ", format::dtype_name(wdtype), " zero_centered=", zero_centered));
        const StoredWeight w(wdtype, {H}, random_values(static_cast<std::size_t>(H), ++seed, -1.5f, 1.5f));
        const Tensor wt = gpu_->resident(w.view());
        std::vector<float> widened(static_cast<std::size_t>(H));
        gpu_->download(wt, widened);
        Guarded out(*gpu_, {T, H}, residual), scaled(*gpu_, {T, H});
        const backend::FoldedNorm next{wt, {.eps = 1e-6f, .zero_centered = zero_centered}, scaled.tensor()};
        gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, out.tensor(), true, &next);
        const std::vector<float> got = out.values();
        expect_same_bits(got, want, "out with the fold");
        std::vector<float> product(got.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
          const float wv = widened[i % static_cast<std::size_t>(H)];
          product[i] = got[i] * (zero_centered ? 1.0f + wv : wv);
        }
        expect_same_bits(scaled.values(), product, "scaled");
        out.expect_guards_intact("out");
        scaled.expect_guards_intact("scaled");
      }
    }
  }
  // The fold's checks: a weight of another length, scaled unlike out, and many tokens.
  Guarded routing(*gpu_, {1, 2 * k}), x(*gpu_, {1, H}), out(*gpu_, {1, H}), scaled(*gpu_, {1, H});
  gpu_->route_softmax_topk(Guarded(*gpu_, {1, kExperts}, random_values(kExperts, 2900)).tensor(), {k, true},
                           routing.tensor());
  const StoredWeight w95(Dtype::f32, {H - 1}, random_values(static_cast<std::size_t>(H - 1), 2901));
  const backend::FoldedNorm short_weight{gpu_->resident(w95.view()), {}, scaled.tensor()};
  EXPECT_THROW(gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, out.tensor(), true, &short_weight),
               ShapeError);
  const StoredWeight w(Dtype::f32, {H}, random_values(static_cast<std::size_t>(H), 2902));
  const backend::FoldedNorm wide_scaled{gpu_->resident(w.view()), {}, gpu_->empty({1, H + 4})};
  EXPECT_THROW(gpu_->moe_experts_routed(x.tensor(), routing.tensor(), kLayer, out.tensor(), true, &wide_scaled),
               ShapeError);
  if (gpu_->can_route_on_device(kLayer, 9)) {
    Guarded routing9(*gpu_, {9, 2 * k}), x9(*gpu_, {9, H}), out9(*gpu_, {9, H});
    gpu_->route_softmax_topk(Guarded(*gpu_, {9, kExperts}, random_values(9 * kExperts, 2903)).tensor(), {k, true},
                             routing9.tensor());
    const backend::FoldedNorm nine{gpu_->resident(w.view()), {}, gpu_->empty({9, H})};
    EXPECT_THROW(gpu_->moe_experts_routed(x9.tensor(), routing9.tensor(), kLayer, out9.tensor(), true, &nine),
                 InternalError);
  }
  expect_no_validation_messages(*gpu_);
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRoutedExperts, ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16, Dtype::q4})),
                         op_case_name);

}  // namespace
}  // namespace moeflux::test

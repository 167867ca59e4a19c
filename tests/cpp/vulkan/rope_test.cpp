// rope on Vulkan against the CPU backend: full and partial rotary dimensions, odd head sizes,
// positions far past 2 pi (where GPU sin/cos would drift), YaRN scaling, a row view, all configs;
// attention_inputs, the fused norm + rope + cache write.
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// Same cos and sin (from the host); only the rotation's products may round differently (FMA).
constexpr double kRtol = 1e-5;

class VulkanRope : public VulkanParamTest<OpCase> {};

TEST_P(VulkanRope, MatchesCpu) {
  struct Dims {
    std::int64_t T, heads, D;
    int rotary_dim;
    float scaling;
  };
  const Dims dims[] = {{1, 1, 2, 2, 1.0f}, {7, 3, 64, 64, 1.0f}, {33, 2, 65, 32, 1.2f}, {5, 4, 128, 64, 1.0f}};
  unsigned seed = 600;
  for (const Dims& d : dims) {
    SCOPED_TRACE(util::concat("T=", d.T, " heads=", d.heads, " D=", d.D, " rotary_dim=", d.rotary_dim));
    backend::RopeOptions options{.rotary_dim = d.rotary_dim, .inv_freq = {}, .attention_scaling = d.scaling};
    for (int j = 0; j < d.rotary_dim / 2; ++j) {
      options.inv_freq.push_back(std::pow(1.0e6f, -2.0f * static_cast<float>(j) / static_cast<float>(d.rotary_dim)));
    }
    std::mt19937 rng(++seed);
    std::vector<std::int32_t> positions(static_cast<std::size_t>(d.T));
    for (auto& p : positions) p = static_cast<std::int32_t>(rng() % 40000);
    const std::vector<float> x = random_values(static_cast<std::size_t>(d.T * d.heads * d.D), ++seed);
    Guarded xc(*cpu_, {d.T, d.heads, d.D}, x), xg(*gpu_, {d.T, d.heads, d.D}, x);
    cpu_->rope(xc.tensor(), positions, options);
    gpu_->rope(xg.tensor(), positions, options);
    const std::vector<float> want = xc.values();
    // Each output is a * c -+ b * s: the error scales with |a c| + |b s| <= (|a| + |b|) * scaling.
    std::vector<double> scale(want.size());
    const std::int64_t half = d.rotary_dim / 2;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const auto j = static_cast<std::int64_t>(i) % d.D;
      const std::size_t pair = j < half ? i + static_cast<std::size_t>(half) : i - static_cast<std::size_t>(half);
      scale[i] = j < d.rotary_dim ? (std::abs(x[i]) + std::abs(x[pair])) * d.scaling : std::abs(x[i]);
    }
    expect_near_cpu(xg.values(), want, scale, kRtol, "rope");
    xg.expect_guards_intact("rope");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRope, ::testing::ValuesIn(op_cases()), op_case_name);

// attention_inputs (norm, rope and cache writes in one dispatch) against the CPU's op-by-op default:
// norms of every dtype (plain and zero-centered) or none, full and partial rotary, the cache rows
// written at an offset and every other row untouched (poisoned caches compared whole).
class VulkanAttentionInputs : public VulkanParamTest<OpCase> {};

TEST_P(VulkanAttentionInputs, MatchesTheOpByOpDefault) {
  const std::int64_t nh = 4, nkv = 2, D = 64, capacity = 12, first_row = 3;
  unsigned seed = 700;
  for (const std::int64_t T : {std::int64_t{1}, std::int64_t{5}}) {
    for (const int rotary_dim : {64, 32}) {
      for (const int norm_kind : {0, 1, 2}) {  // none, w, (1 + w)
        SCOPED_TRACE(util::concat("T=", T, " rotary_dim=", rotary_dim, " norm=", norm_kind));
        backend::RopeOptions rope{.rotary_dim = rotary_dim, .inv_freq = {}, .attention_scaling = 1.0f};
        for (int j = 0; j < rotary_dim / 2; ++j)
          rope.inv_freq.push_back(std::pow(1.0e4f, -2.0f * static_cast<float>(j) / static_cast<float>(rotary_dim)));
        std::vector<std::int32_t> positions(static_cast<std::size_t>(T));
        for (std::int64_t t = 0; t < T; ++t) positions[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(first_row + t);
        const auto q = random_values(static_cast<std::size_t>(T * nh * D), ++seed);
        const auto k = random_values(static_cast<std::size_t>(T * nkv * D), ++seed);
        const auto v = random_values(static_cast<std::size_t>(T * nkv * D), ++seed);
        const auto poison = random_values(static_cast<std::size_t>(capacity * nkv * D), ++seed);
        const StoredWeight qn(GetParam().dtype, {D}, random_values(static_cast<std::size_t>(D), ++seed, -1.5f, 1.5f));
        const StoredWeight kn(GetParam().dtype, {D}, random_values(static_cast<std::size_t>(D), ++seed, -1.5f, 1.5f));
        const backend::NormOptions norm{.eps = 1e-6f, .zero_centered = norm_kind == 2};
        auto run = [&](Backend& b) {
          Guarded qt(b, {T, nh, D}, q), kt(b, {T, nkv, D}, k), vt(b, {T, nkv * D}, v);
          Guarded kc(b, {capacity, nkv * D}, poison), vc(b, {capacity, nkv * D}, poison);
          const Tensor qw = norm_kind ? b.resident(qn.view()) : Tensor(), kw = norm_kind ? b.resident(kn.view()) : Tensor();
          Tensor q3 = qt.tensor(), k3 = kt.tensor(), kct = kc.tensor(), vct = vc.tensor();
          b.attention_inputs(q3, k3, vt.tensor(), qw, kw, norm, positions, rope, kct, vct, first_row);
          kc.expect_guards_intact("k cache");
          vc.expect_guards_intact("v cache");
          qt.expect_guards_intact("q");
          return std::array<std::vector<float>, 3>{qt.values(), kc.values(), vc.values()};
        };
        const auto want = run(*cpu_);
        const auto got = run(*gpu_);
        expect_near_cpu(got[0], want[0], std::vector<double>(want[0].size(), 8.0), kRtol, "q");
        expect_near_cpu(got[1], want[1], std::vector<double>(want[1].size(), 8.0), kRtol, "k cache");
        expect_same_bits(got[2], want[2], "v cache");
      }
    }
  }
}

// The device keeps the rope table of the last positions and options: calls in a row with the same
// number of positions but other positions, or other scaling, must each get their own table.
TEST_P(VulkanAttentionInputs, TheRopeTableFollowsPositionsAndOptions) {
  const std::int64_t T = 3, nh = 2, nkv = 1, D = 32, capacity = 16;
  backend::RopeOptions rope{.rotary_dim = D, .inv_freq = {}, .attention_scaling = 1.0f};
  for (int j = 0; j < D / 2; ++j) rope.inv_freq.push_back(std::pow(1.0e4f, -2.0f * static_cast<float>(j) / D));
  const auto q = random_values(static_cast<std::size_t>(T * nh * D), 760);
  const auto k = random_values(static_cast<std::size_t>(T * nkv * D), 761);
  const auto v = random_values(static_cast<std::size_t>(T * nkv * D), 762);
  struct Call {
    std::vector<std::int32_t> positions;
    float scaling;
  };
  const Call calls[] = {{{3, 4, 5}, 1.0f}, {{3, 4, 5}, 1.0f}, {{9, 10, 11}, 1.0f}, {{9, 10, 11}, 0.5f}, {{3, 4, 5}, 0.5f}};
  auto run = [&](Backend& b, const Call& c) {
    backend::RopeOptions o = rope;
    o.attention_scaling = c.scaling;
    Guarded qt(b, {T, nh, D}, q), kt(b, {T, nkv, D}, k), vt(b, {T, nkv * D}, v);
    Guarded kc(b, {capacity, nkv * D}), vc(b, {capacity, nkv * D});
    Tensor q3 = qt.tensor(), k3 = kt.tensor(), kct = kc.tensor(), vct = vc.tensor();
    b.attention_inputs(q3, k3, vt.tensor(), Tensor(), Tensor(), {}, c.positions, o, kct, vct, 0);
    return qt.values();
  };
  for (const Call& c : calls) {
    SCOPED_TRACE(util::concat("first position ", c.positions[0], " scaling ", c.scaling));
    const auto want = run(*cpu_, c);
    expect_near_cpu(run(*gpu_, c), want, std::vector<double>(want.size(), 8.0), kRtol, "q");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanAttentionInputs,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::bf16})), op_case_name);

}  // namespace
}  // namespace moeflux::test

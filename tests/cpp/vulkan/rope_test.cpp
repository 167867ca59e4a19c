// rope on Vulkan against the CPU backend: full and partial rotary dimensions, odd head sizes,
// positions far past 2 pi (where GPU sin/cos would drift), YaRN scaling, a row view, all configs.
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

}  // namespace
}  // namespace moeflux::test

// rms_norm on Vulkan against the CPU backend: every weight dtype and configuration, widths from 1
// to past 4096 (below, at and above the subgroup and workgroup sizes; 4096, the longest row the
// shader holds in registers at WG 256, and 4097, the shortest it loops over), zero-centered
// weights, per-head views and in-place use; more rows than workgroups, so a workgroup normalises
// several. rms_scale likewise, with and without subgroups, y of any rank and in place; and
// apply_norm_weight (rms_norm's weight alone), bit for bit.
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

class VulkanRmsNorm : public VulkanParamTest<OpCase> {};

// A float32 mean of squares summed in another order, 1/sqrt and two products: a few ulps.
constexpr double kRtol = 1e-5;

TEST_P(VulkanRmsNorm, MatchesCpu) {
  const OpCase c = GetParam();
  const std::int64_t widths[] = {1, 7, 31, 32, 33, 63, 64, 65, 257, 2048, 4096, 4097, 4099};
  unsigned seed = 100;
  for (const std::int64_t C : widths) {
    for (const bool zero_centered : {false, true}) {
      SCOPED_TRACE(util::concat("C=", C, " zero_centered=", zero_centered));
      const std::int64_t R = 1 + C % 5;
      const std::vector<float> x = random_values(static_cast<std::size_t>(R * C), ++seed, -2.0f, 2.0f);
      const StoredWeight w(c.dtype, {C}, random_values(static_cast<std::size_t>(C), ++seed, -1.5f, 1.5f));
      const backend::NormOptions options{.eps = 1e-6f, .zero_centered = zero_centered};
      Guarded xc(*cpu_, {R, C}, x), outc(*cpu_, {R, C});
      cpu_->rms_norm(xc.tensor(), cpu_->resident(w.view()), options, outc.tensor());
      Guarded xg(*gpu_, {R, C}, x), outg(*gpu_, {R, C});
      const Tensor wg = gpu_->resident(w.view());
      gpu_->rms_norm(xg.tensor(), wg, options, outg.tensor());
      const std::vector<float> want = outc.values();
      expect_near_cpu(outg.values(), want, kRtol, "rms_norm");
      outg.expect_guards_intact("rms_norm");
      gpu_->rms_norm(xg.tensor(), wg, options, xg.tensor());  // in place
      expect_near_cpu(xg.values(), want, kRtol, "rms_norm in place");
      xg.expect_guards_intact("rms_norm in place");
    }
  }
}

TEST_P(VulkanRmsNorm, NormalisesEachHeadOfARowView) {
  const OpCase c = GetParam();
  const std::int64_t T = 3, heads = 5, D = 65;
  const std::vector<float> all = random_values(static_cast<std::size_t>((T + 2) * heads * D), 13);
  const StoredWeight w(c.dtype, {D}, random_values(static_cast<std::size_t>(D), 14));
  const backend::NormOptions options{.eps = 1e-5f, .zero_centered = false};
  Guarded bigc(*cpu_, {T + 2, heads, D}, all), outc(*cpu_, {T, heads, D});
  cpu_->rms_norm(bigc.tensor().rows(1, T), cpu_->resident(w.view()), options, outc.tensor());
  Guarded bigg(*gpu_, {T + 2, heads, D}, all), outg(*gpu_, {T, heads, D});
  gpu_->rms_norm(bigg.tensor().rows(1, T), gpu_->resident(w.view()), options, outg.tensor());
  expect_near_cpu(outg.values(), outc.values(), kRtol, "rms_norm heads");
  outg.expect_guards_intact("rms_norm heads");
}

// Past the device's group count a workgroup takes several rows (its reduction's shared memory
// reused after a barrier): a device pretending to allow 16 groups, with and without subgroups.
TEST(VulkanRmsNormRows, AWorkgroupTakesSeveralRowsPastTheGroupLimit) {
  auto cpu = make_backend();
  for (const bool subgroups : {true, false}) {
    SCOPED_TRACE(subgroups ? "subgroups" : "shared-memory reductions");
    auto gpu = make_vulkan({.name = "16groups", .subgroups = subgroups, .max_groups = 16});
    const std::int64_t C = 65, R = 16 * 3 + 7;
    const std::vector<float> x = random_values(static_cast<std::size_t>(R * C), 400, -2.0f, 2.0f);
    const StoredWeight w(format::Dtype::f32, {C}, random_values(static_cast<std::size_t>(C), 402, -1.5f, 1.5f));
    const backend::NormOptions options{.eps = 1e-6f, .zero_centered = false};
    Guarded xc(*cpu, {R, C}, x), outc(*cpu, {R, C});
    Guarded xg(*gpu, {R, C}, x), outg(*gpu, {R, C});
    cpu->rms_norm(xc.tensor(), cpu->resident(w.view()), options, outc.tensor());
    gpu->rms_norm(xg.tensor(), gpu->resident(w.view()), options, outg.tensor());
    expect_near_cpu(outg.values(), outc.values(), kRtol, "rms_norm");
    outg.expect_guards_intact("rms_norm");
  }
}

TEST_P(VulkanRmsNorm, ApplyNormWeightGivesTheCpuBits) {
  const OpCase c = GetParam();
  unsigned seed = 600;
  for (const std::int64_t C : {std::int64_t{1}, std::int64_t{65}, std::int64_t{2048}, std::int64_t{4099}}) {
    for (const bool zero_centered : {false, true}) {
      SCOPED_TRACE(util::concat("C=", C, " zero_centered=", zero_centered));
      const std::int64_t R = 1 + C % 3;
      const std::vector<float> x = random_values(static_cast<std::size_t>(R * C), ++seed, -2.0f, 2.0f);
      const StoredWeight w(c.dtype, {C}, random_values(static_cast<std::size_t>(C), ++seed, -1.5f, 1.5f));
      const backend::NormOptions options{.eps = 1e-6f, .zero_centered = zero_centered};
      Guarded xc(*cpu_, {R, C}, x), outc(*cpu_, {R, C});
      cpu_->apply_norm_weight(xc.tensor(), cpu_->resident(w.view()), options, outc.tensor());
      Guarded xg(*gpu_, {R, C}, x), outg(*gpu_, {R, C});
      gpu_->apply_norm_weight(xg.tensor(), gpu_->resident(w.view()), options, outg.tensor());
      expect_same_bits(outg.values(), outc.values(), "apply_norm_weight");
      outg.expect_guards_intact("apply_norm_weight");
    }
  }
  expect_no_validation_messages(*gpu_);
}

TEST_P(VulkanRmsNorm, RmsScaleMatchesCpu) {
  struct Case {
    std::int64_t T, H;
    Shape y;
  };
  const Case cases[] = {{1, 1, {1, 3}}, {1, 2048, {1, 32, 128}}, {3, 65, {3, 257}}, {5, 4099, {5, 2, 3}}};
  unsigned seed = 500;
  for (const Case& c : cases) {
    SCOPED_TRACE(util::concat("T=", c.T, " H=", c.H, " y=", format::shape_string(c.y)));
    std::int64_t n = 1;
    for (const std::int64_t s : c.y) n *= s;
    const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.H), ++seed, -2.0f, 2.0f);
    const std::vector<float> y = random_values(static_cast<std::size_t>(n), ++seed, -3.0f, 3.0f);
    Guarded xc(*cpu_, {c.T, c.H}, x), yc(*cpu_, c.y, y), outc(*cpu_, c.y);
    cpu_->rms_scale(xc.tensor(), 1e-6f, yc.tensor(), outc.tensor());
    Guarded xg(*gpu_, {c.T, c.H}, x), yg(*gpu_, c.y, y), outg(*gpu_, c.y);
    gpu_->rms_scale(xg.tensor(), 1e-6f, yg.tensor(), outg.tensor());
    const std::vector<float> want = outc.values();
    expect_near_cpu(outg.values(), want, kRtol, "rms_scale");
    outg.expect_guards_intact("rms_scale");
    gpu_->rms_scale(xg.tensor(), 1e-6f, yg.tensor(), yg.tensor());  // in place
    expect_near_cpu(yg.values(), want, kRtol, "rms_scale in place");
    yg.expect_guards_intact("rms_scale in place");
  }
  Guarded x(*gpu_, {2, 8}), y3(*gpu_, {3, 5});
  EXPECT_THROW(gpu_->rms_scale(x.tensor(), 1e-6f, y3.tensor(), y3.tensor()), ShapeError);
  expect_no_validation_messages(*gpu_);
}

// rms_scale's workgroups past the group limit: several column blocks and rows each.
TEST(VulkanRmsScaleBlocks, AWorkgroupTakesSeveralBlocksAndRowsPastTheGroupLimit) {
  auto cpu = make_backend();
  for (const bool subgroups : {true, false}) {
    SCOPED_TRACE(subgroups ? "subgroups" : "shared-memory reductions");
    auto gpu = make_vulkan({.name = "16groups", .subgroups = subgroups, .max_groups = 16});
    const std::int64_t R = 19, H = 5000, C = 17 * 1024 + 3;  // x past the registers, y past 16 blocks
    const std::vector<float> x = random_values(static_cast<std::size_t>(R * H), 410, -2.0f, 2.0f);
    const std::vector<float> y = random_values(static_cast<std::size_t>(R * C), 411, -3.0f, 3.0f);
    Guarded xc(*cpu, {R, H}, x), yc(*cpu, {R, C}, y), outc(*cpu, {R, C});
    Guarded xg(*gpu, {R, H}, x), yg(*gpu, {R, C}, y), outg(*gpu, {R, C});
    cpu->rms_scale(xc.tensor(), 1e-6f, yc.tensor(), outc.tensor());
    gpu->rms_scale(xg.tensor(), 1e-6f, yg.tensor(), outg.tensor());
    expect_near_cpu(outg.values(), outc.values(), kRtol, "rms_scale");
    outg.expect_guards_intact("rms_scale");
    expect_no_validation_messages(*gpu);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanRmsNorm,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16})),
                         op_case_name);

}  // namespace
}  // namespace moeflux::test

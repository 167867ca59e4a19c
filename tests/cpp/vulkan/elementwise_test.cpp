// swiglu, add and sigmoid_mul on Vulkan against the CPU backend, every configuration: odd sizes,
// a row longer than 4096, in-place use and grouped gates.
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// exp may differ by a few ulps between the GPU and the C library.
constexpr double kRtol = 1e-5;

class VulkanElementwise : public VulkanParamTest<OpCase> {};

TEST_P(VulkanElementwise, SwigluAndAddMatchCpu) {
  const std::int64_t sizes[][2] = {{1, 1}, {1, 7}, {3, 31}, {2, 32}, {5, 33}, {1, 63}, {4, 64}, {3, 65}, {2, 257}, {2, 4099}};
  unsigned seed = 700;
  for (const auto& s : sizes) {
    const std::int64_t T = s[0], C = s[1];
    SCOPED_TRACE(util::concat("T=", T, " C=", C));
    const std::vector<float> a = random_values(static_cast<std::size_t>(T * C), ++seed, -6.0f, 6.0f);
    const std::vector<float> b = random_values(static_cast<std::size_t>(T * C), ++seed);
    Guarded ac(*cpu_, {T, C}, a), bc(*cpu_, {T, C}, b), oc(*cpu_, {T, C});
    Guarded ag(*gpu_, {T, C}, a), bg(*gpu_, {T, C}, b), og(*gpu_, {T, C});
    cpu_->swiglu(ac.tensor(), bc.tensor(), oc.tensor());
    gpu_->swiglu(ag.tensor(), bg.tensor(), og.tensor());
    expect_near_cpu(og.values(), oc.values(), kRtol, "swiglu");
    og.expect_guards_intact("swiglu");
    cpu_->add(ac.tensor(), bc.tensor(), oc.tensor());
    gpu_->add(ag.tensor(), bg.tensor(), og.tensor());
    expect_same_bits(og.values(), oc.values(), "add");  // one correctly rounded add on both
    gpu_->add(ag.tensor(), bg.tensor(), ag.tensor());  // in place
    expect_same_bits(ag.values(), oc.values(), "add in place");
    gpu_->swiglu(bg.tensor(), og.tensor(), og.tensor());
    cpu_->swiglu(bc.tensor(), oc.tensor(), oc.tensor());
    expect_near_cpu(og.values(), oc.values(), kRtol, "swiglu in place");
    ag.expect_guards_intact("in place");
  }
}

TEST_P(VulkanElementwise, SigmoidMulMatchesCpu) {
  const std::int64_t sizes[][3] = {{1, 1, 1}, {3, 1, 7}, {7, 2, 64}, {2, 4, 260}, {33, 3, 63}, {2, 32, 4128}};
  unsigned seed = 800;
  for (const auto& s : sizes) {
    const std::int64_t T = s[0], G = s[1], C = s[2];
    SCOPED_TRACE(util::concat("T=", T, " G=", G, " C=", C));
    const std::vector<float> gate = random_values(static_cast<std::size_t>(T * G), ++seed, -6.0f, 6.0f);
    const std::vector<float> x = random_values(static_cast<std::size_t>(T * C), ++seed);
    Guarded gc(*cpu_, {T, G}, gate), xc(*cpu_, {T, C}, x), oc(*cpu_, {T, C});
    Guarded gg(*gpu_, {T, G}, gate), xg(*gpu_, {T, C}, x), og(*gpu_, {T, C});
    cpu_->sigmoid_mul(gc.tensor(), xc.tensor(), oc.tensor());
    gpu_->sigmoid_mul(gg.tensor(), xg.tensor(), og.tensor());
    const std::vector<float> want = oc.values();
    expect_near_cpu(og.values(), want, kRtol, "sigmoid_mul");
    og.expect_guards_intact("sigmoid_mul");
    gpu_->sigmoid_mul(gg.tensor(), xg.tensor(), xg.tensor());  // in place
    expect_near_cpu(xg.values(), want, kRtol, "sigmoid_mul in place");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanElementwise, ::testing::ValuesIn(op_cases()), op_case_name);

TEST_F(VulkanTest, ElementwiseErrors) {
  Tensor a = gpu_->empty({2, 8}), b = gpu_->empty({2, 7});
  EXPECT_THROW(gpu_->add(a, b, a), ShapeError);
  EXPECT_THROW(gpu_->swiglu(a, a, b), ShapeError);
  Tensor gate = gpu_->empty({2, 3});
  EXPECT_THROW(gpu_->sigmoid_mul(gate, a, a), ShapeError);
  Tensor shifted = a.view({16}).rows(1, 8).view({1, 8});
  Tensor first = a.rows(0, 1);
  EXPECT_THROW(gpu_->add(first, first, shifted), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

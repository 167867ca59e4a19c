// matmul on Vulkan against the CPU backend: f32/f16/bf16 weights in every configuration, few rows
// (matmul_vec) and many (matmul_tiled), odd sizes and K past 4096; weights and outputs larger than
// one storage binding (the smallrange configuration, and an LM head) split into several dispatches.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

// Relative to sum |x_k w_k|: float32 sums in a different order err by ~sqrt(K) ulps.
constexpr double kRtol = 1e-4;

struct Dims {
  std::int64_t T, K, N;
};

// y = x w^T on both backends; compares against the CPU with the error scale of each dot product.
// x_guard: where x starts in its buffer (Guarded's default, 37, is no multiple of 4: x as floats).
void check_matmul(Backend& cpu, backend::vk::VulkanBackend& gpu, format::Dtype dtype, Dims d, unsigned seed,
                  std::int64_t x_guard = 37) {
  SCOPED_TRACE(util::concat("T=", d.T, " K=", d.K, " N=", d.N, " x at ", x_guard));
  const std::vector<float> x = random_values(static_cast<std::size_t>(d.T * d.K), seed);
  const StoredWeight w(dtype, {d.N, d.K}, random_values(static_cast<std::size_t>(d.N * d.K), seed + 1));
  Guarded xc(cpu, {d.T, d.K}, x), yc(cpu, {d.T, d.N});
  cpu.matmul(xc.tensor(), cpu.resident(w.view()), yc.tensor());
  Guarded xg(gpu, {d.T, d.K}, x, x_guard), yg(gpu, {d.T, d.N});
  gpu.matmul(xg.tensor(), gpu.resident(w.view()), yg.tensor());
  std::vector<double> scale(static_cast<std::size_t>(d.T * d.N));
  for (std::int64_t t = 0; t < d.T; ++t) {
    for (std::int64_t n = 0; n < d.N; ++n) {
      double s = 0.0;
      for (std::int64_t k = 0; k < d.K; ++k) {
        s += std::abs(static_cast<double>(x[static_cast<std::size_t>(t * d.K + k)]) *
                      static_cast<double>(w.rounded[static_cast<std::size_t>(n * d.K + k)]));
      }
      scale[static_cast<std::size_t>(t * d.N + n)] = s;
    }
  }
  expect_near_cpu(yg.values(), yc.values(), scale, kRtol, "matmul");
  yg.expect_guards_intact("matmul");
}

class VulkanMatmul : public VulkanParamTest<OpCase> {};

TEST_P(VulkanMatmul, MatchesCpu) {
  const Dims dims[] = {{1, 1, 1},   {1, 7, 257},  {1, 4099, 63}, {2, 33, 65},   {7, 64, 31},
                       {8, 65, 33}, {9, 32, 64},  {31, 63, 7},   {33, 257, 65}, {65, 4099, 33},
                       {3, 2052, 9}, {1, 4096, 5}};  // steps of four vec4s per lane, then a tail
  unsigned seed = 200;
  // x at 37 (floats) and at 40 (a multiple of 4: matmul_vec reads vec4s where K is one too).
  for (const Dims& d : dims) {
    check_matmul(*cpu_, *gpu_, GetParam().dtype, d, seed += 2);
    check_matmul(*cpu_, *gpu_, GetParam().dtype, d, seed += 2, 40);
  }
  // matmul_tiled: T around its 64-row tiles and their groups of 8 rows, N around its 128-row tiles,
  // K past one slice of 32 with and without a tail; x at a multiple of 4 (vec4s) and not.
  const Dims tiled[] = {{63, 96, 129}, {130, 100, 257}, {299, 64, 131}, {71, 33, 300}};
  for (const Dims& d : tiled) {
    check_matmul(*cpu_, *gpu_, GetParam().dtype, d, seed += 2);
    check_matmul(*cpu_, *gpu_, GetParam().dtype, d, seed += 2, 40);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanMatmul,
                         ::testing::ValuesIn(op_cases({format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16})),
                         op_case_name);

TEST(VulkanMatmulWindows, AnLmHeadLargerThanOneBindingIsSplit) {
  // [N, K] f16 of 4 MiB under a pretended 1 MiB limit: four or more row ranges, for decode and prefill.
  auto cpu = make_backend();
  auto gpu = make_vulkan({.name = "1mib", .storage16 = true, .subgroups = true, .max_storage_range = 1 << 20});
  const std::uint64_t before = gpu->context().recorder.dispatches();
  check_matmul(*cpu, *gpu, format::Dtype::f16, {1, 512, 4099}, 300);
  EXPECT_GE(gpu->context().recorder.dispatches() - before, 4u);
  check_matmul(*cpu, *gpu, format::Dtype::f16, {20, 512, 4099}, 302);
  expect_no_validation_messages(*gpu);
}

TEST(VulkanMatmulWindows, ARowLongerThanABindingIsUnsupported) {
  auto gpu = make_vulkan(vulkan_config("smallrange"));
  Tensor x = gpu->empty({1, 20000}), w = gpu->empty({2, 20000}), y = gpu->empty({1, 2});
  EXPECT_THROW(gpu->matmul(x, w, y), Unsupported);
  expect_no_validation_messages(*gpu);
}

TEST_F(VulkanTest, MatmulShapesAndAliasing) {
  Tensor x = gpu_->empty({3, 8}), w = gpu_->empty({5, 8}), y = gpu_->empty({3, 5});
  Tensor w_bad = gpu_->empty({5, 7});
  EXPECT_THROW(gpu_->matmul(x, w_bad, y), ShapeError);
  Tensor square = gpu_->empty({8, 8});
  EXPECT_THROW(gpu_->matmul(square, square, square), ShapeError);
  Tensor empty_k = gpu_->empty({3, 0}), w0 = gpu_->empty({5, 0});
  Guarded y0(*gpu_, {3, 5});
  gpu_->matmul(empty_k, w0, y0.tensor());
  expect_same_bits(y0.values(), std::vector<float>(15, 0.0f), "an empty sum");
}

}  // namespace
}  // namespace moeflux::test

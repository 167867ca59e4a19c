// matmul and embedding with quantized weights on Vulkan against the CPU backend: every bit width,
// group size and scale dtype, T = 1, 3 and 8 (matmul_vec_q, and matmul_vec_q_quads at 4099 rows),
// 9 to 299 (matmul_tiled_q: partial and whole 64-row tiles, several 128-row tiles of w and a
// partial one, x at an odd offset and at a multiple of 4), odd N, K past 4096, in every
// configuration (smallrange cuts the weight's sections into row windows).
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using format::Dtype;

// Relative to sum |x_k w_k|: both sides sum float32 products in different orders (the CPU through
// per-group scaling of q . x, which can exceed sum |x w| a few times when the bias cancels it).
constexpr double kRtol = 1e-4;

// x_guard: where x starts in its buffer (Guarded's default, 37, is no multiple of 4: x as floats).
void check_matmul(Backend& cpu, backend::vk::VulkanBackend& gpu, const QuantizedWeight& w, std::int64_t T,
                  unsigned seed, std::int64_t x_guard = 37) {
  const std::int64_t N = w.shape[0], K = w.shape[1];
  SCOPED_TRACE(util::concat("T=", T, " K=", K, " N=", N, " x at ", x_guard));
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), seed);
  Guarded xc(cpu, {T, K}, x), yc(cpu, {T, N});
  cpu.matmul(xc.tensor(), cpu.resident(w.view()), yc.tensor());
  Guarded xg(gpu, {T, K}, x, x_guard), yg(gpu, {T, N});
  gpu.matmul(xg.tensor(), gpu.resident(w.view()), yg.tensor());
  std::vector<double> scale(static_cast<std::size_t>(T * N));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t n = 0; n < N; ++n) {
      double s = 0.0;
      for (std::int64_t k = 0; k < K; ++k) {
        s += std::abs(static_cast<double>(x[static_cast<std::size_t>(t * K + k)]) *
                      static_cast<double>(w.values[static_cast<std::size_t>(n * K + k)]));
      }
      scale[static_cast<std::size_t>(t * N + n)] = s;
    }
  }
  expect_near_cpu(yg.values(), yc.values(), scale, kRtol, "quantized matmul");
  yg.expect_guards_intact("quantized matmul");
}

class VulkanQuantMatmul : public VulkanParamTest<OpCase> {};

TEST_P(VulkanQuantMatmul, MatchesCpu) {
  const int bits = format::quant_bits(GetParam().dtype);
  unsigned seed = 1000;
  for (const int group : {32, 64, 128}) {
    for (const Dtype scale : {Dtype::bf16, Dtype::f16}) {
      SCOPED_TRACE(util::concat("bits=", bits, " group=", group, " scales=", format::dtype_name(scale)));
      const format::QuantParams params{.bits = bits, .group_size = group, .scale_dtype = scale};
      struct Shape2 {
        std::int64_t N, K;
      };
      // 4099 rows: enough for matmul_vec_q_quads, with an odd last row.
      for (const Shape2 s : {Shape2{257, group}, Shape2{33, 3 * group}, Shape2{7, 4096 + group}, Shape2{4099, 2 * group}}) {
        const auto n = static_cast<std::size_t>(s.N * s.K);
        const QuantizedWeight w(params, {s.N, s.K}, random_values(n, ++seed, -2.0f, 2.0f));
        for (const std::int64_t T : {1, 3, 8, 17, 64}) check_matmul(*cpu_, *gpu_, w, T, ++seed);
      }
      // matmul_tiled_q: T around the 64-row tiles and their groups of 8 rows, N around its 128-row
      // tiles (one, several, a partial last), K of one group and of odd multiples of 32.
      for (const Shape2 s : {Shape2{129, group}, Shape2{300, 3 * group}, Shape2{61, 5 * group}}) {
        const auto n = static_cast<std::size_t>(s.N * s.K);
        const QuantizedWeight w(params, {s.N, s.K}, random_values(n, ++seed, -2.0f, 2.0f));
        for (const std::int64_t T : {9, 63, 65, 130, 299}) check_matmul(*cpu_, *gpu_, w, T, ++seed);
        check_matmul(*cpu_, *gpu_, w, 71, ++seed, 40);  // x as vec4s
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanQuantMatmul,
                         ::testing::ValuesIn(op_cases({Dtype::q8, Dtype::q4, Dtype::q3, Dtype::q2})), op_case_name);

class VulkanQuantEmbedding : public VulkanParamTest<OpCase> {};

TEST_P(VulkanQuantEmbedding, MatchesCpuBitForBit) {
  const int bits = format::quant_bits(GetParam().dtype);
  unsigned seed = 1100;
  for (const int group : {32, 64, 128}) {
    for (const Dtype scale : {Dtype::bf16, Dtype::f16}) {
      SCOPED_TRACE(util::concat("bits=", bits, " group=", group, " scales=", format::dtype_name(scale)));
      const format::QuantParams params{.bits = bits, .group_size = group, .scale_dtype = scale};
      const std::int64_t V = 257, H = group == 128 ? 33 * group : 3 * group, T = 19;
      const QuantizedWeight table(params, {V, H}, random_values(static_cast<std::size_t>(V * H), ++seed, -3.0f, 3.0f));
      std::mt19937 rng(++seed);
      std::vector<std::int32_t> ids(static_cast<std::size_t>(T));
      for (auto& id : ids) id = static_cast<std::int32_t>(rng() % V);
      ids.back() = static_cast<std::int32_t>(V - 1);
      Guarded outc(*cpu_, {T, H}), outg(*gpu_, {T, H});
      cpu_->embedding(cpu_->resident(table.view()), ids, outc.tensor());
      gpu_->embedding(gpu_->resident(table.view()), ids, outg.tensor());
      expect_same_bits(outg.values(), outc.values(), "quantized embedding");
      outg.expect_guards_intact("quantized embedding");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanQuantEmbedding,
                         ::testing::ValuesIn(op_cases({Dtype::q8, Dtype::q4, Dtype::q3, Dtype::q2})), op_case_name);

}  // namespace
}  // namespace moeflux::test

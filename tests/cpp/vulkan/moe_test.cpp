// moe_experts on Vulkan against the CPU backend: f32, bf16, q8, q4 and q3 experts, k = 1 and 2,
// decode and prefill row counts, a token routed twice to one expert, out accumulated onto; ascending
// batches with accumulate = true give the bits of one call; rows past one binding (smallrange) in
// windows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "moe_run.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using backend::ExpertWeights;
using backend::MoeRouting;
using format::Dtype;

// Relative to the largest |output|: float32 products of a few hundred terms, summed in other orders.
constexpr double kRtol = 1e-5;
constexpr int kExperts = 5;

// Expert weights as stored (float dtypes or quantized in groups of 32), kept alive for both backends.
struct Experts {
  std::vector<StoredWeight> floats;
  std::vector<QuantizedWeight> quantized;
  Dtype dtype;

  Experts(Dtype d, std::int64_t H, std::int64_t I) : dtype(d) {
    for (int e = 0; e < kExperts; ++e) {
      for (int b = 0; b < 3; ++b) {
        const backend::Shape shape = b < 2 ? backend::Shape{I, H} : backend::Shape{H, I};
        const auto seed = 1400 + static_cast<unsigned>(3 * e + b);
        const std::vector<float> values = random_values(static_cast<std::size_t>(H * I), seed, -0.5f, 0.5f);
        if (format::is_quantized(d)) {
          const format::QuantParams q{.bits = format::quant_bits(d), .group_size = 32, .scale_dtype = Dtype::bf16};
          quantized.emplace_back(q, shape, values);
        } else {
          floats.emplace_back(d, shape, values);
        }
      }
    }
  }
  format::TensorView view(int e, int block) const {
    const auto i = static_cast<std::size_t>(3 * e + block);
    return format::is_quantized(dtype) ? quantized[i].view("experts.block") : floats[i].view();
  }
  std::vector<ExpertWeights> weights(std::span<const std::int32_t> ids) const {
    std::vector<ExpertWeights> out;
    for (const std::int32_t e : ids) out.push_back({view(e, 0), view(e, 1), view(e, 2)});
    return out;
  }
};

// k distinct experts per token, or with `repeat` the first token routed twice to one expert.
Routing route(std::int64_t T, int k, bool repeat, unsigned seed) {
  Routing r(T, k, seed);
  std::mt19937 rng(seed);
  std::vector<std::int32_t> all(kExperts);
  std::iota(all.begin(), all.end(), 0);
  for (std::int64_t t = 0; t < T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    r.ids.insert(r.ids.end(), all.begin(), all.begin() + k);
  }
  if (repeat) r.ids[1] = r.ids[0];
  r.ids_done();
  return r;
}

class VulkanMoe : public VulkanParamTest<OpCase> {};

TEST_P(VulkanMoe, MatchesCpuAndBatchesGiveTheSameBits) {
  struct Dims {
    std::int64_t T, H, I;
    int k;
    bool repeat;
  };
  // I = 192: 24 blocks of 8 down columns, three a lane of 8 (lavapipe) where a lane's last blocks
  // are loaded together, one a lane of 32 with lanes past the end.
  const Dims dims[] = {{1, 96, 64, 1, false}, {1, 96, 64, 2, false}, {5, 96, 64, 2, true},
                       {3, 96, 192, 3, false}, {17, 96, 64, 1, false}, {17, 4128, 32, 2, false}};
  unsigned seed = 1500;
  for (const Dims& d : dims) {
    SCOPED_TRACE(util::concat("T=", d.T, " H=", d.H, " I=", d.I, " k=", d.k, d.repeat ? " repeated expert" : ""));
    const Experts experts(GetParam().dtype, d.H, d.I);
    const Routing r = route(d.T, d.k, d.repeat, ++seed);
    const std::vector<float> x = random_values(static_cast<std::size_t>(d.T * d.H), ++seed);
    const std::vector<float> init = random_values(x.size(), ++seed);
    const std::vector<float> want = run_moe(*cpu_, experts, r, x, d.H, nullptr, r.unique.size());
    const std::vector<float> got = run_moe(*gpu_, experts, r, x, d.H, nullptr, r.unique.size());
    expect_near_largest(got, want, kRtol, "moe_experts");
    for (const std::size_t batch : {std::size_t{1}, std::size_t{2}}) {
      expect_same_bits(run_moe(*gpu_, experts, r, x, d.H, nullptr, batch), got, util::concat("batches of ", batch));
    }
    expect_near_largest(run_moe(*gpu_, experts, r, x, d.H, &init, 2), run_moe(*cpu_, experts, r, x, d.H, &init, 2),
                        kRtol, "moe_experts accumulated onto out");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanMoe, ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::bf16, Dtype::q8, Dtype::q4, Dtype::q3})),
                         op_case_name);

TEST_F(VulkanTest, MoeErrors) {
  const Experts experts(Dtype::f32, 8, 4);
  const Routing r = route(2, 1, false, 7);
  Tensor x = gpu_->empty({2, 8}), out = gpu_->empty({2, 8});
  std::vector<ExpertWeights> w = experts.weights(r.unique);
  w[0].down.shape = {4, 8};
  EXPECT_THROW(gpu_->moe_experts(x, r.view(r.unique), w, out, false), ShapeError);
  EXPECT_THROW(gpu_->moe_experts(x, r.view(r.unique), std::span(w).first(0), out, false), ShapeError);
  Tensor wrong = gpu_->empty({2, 7});
  EXPECT_THROW(gpu_->moe_experts(x, r.view(r.unique), experts.weights(r.unique), wrong, false), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

// matmul_many on Vulkan: quantized weights of one form sharing x in one dispatch of
// matmul_vec_q_many, bit for bit what separate matmuls (matmul_vec_q) give and near the CPU
// backend; every bit width, 2 to 4 weights with odd row counts, T = 1..8, K long enough for the
// four-block loop; and the calls that fall back to one matmul per weight (mixed forms, a float
// weight, T past the decode maximum), in every configuration.
#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using format::Dtype;

constexpr double kRtol = 1e-4;  // as quant_matmul_test.cpp: relative to sum |x_k w_k|

// A weight as both backends hold it, with its values (dequantized or rounded) for the scale.
struct TestWeight {
  std::unique_ptr<QuantizedWeight> quantized;
  std::unique_ptr<StoredWeight> stored;
  const std::vector<float>& values() const { return quantized ? quantized->values : stored->rounded; }
  format::TensorView view() const { return quantized ? quantized->view() : stored->view(); }
  std::int64_t rows() const { return quantized ? quantized->shape[0] : stored->shape[0]; }
};

TestWeight quantized_weight(const format::QuantParams& params, std::int64_t N, std::int64_t K, unsigned seed) {
  TestWeight w;
  w.quantized = std::make_unique<QuantizedWeight>(params, backend::Shape{N, K},
                                                  random_values(static_cast<std::size_t>(N * K), seed, -2.0f, 2.0f));
  return w;
}

TestWeight float_weight(std::int64_t N, std::int64_t K, unsigned seed) {
  TestWeight w;
  w.stored = std::make_unique<StoredWeight>(Dtype::f32, backend::Shape{N, K},
                                            random_values(static_cast<std::size_t>(N * K), seed, -2.0f, 2.0f));
  return w;
}

// Runs matmul_many on both backends into poisoned, guarded outputs and checks it against separate
// matmuls on Vulkan (bit for bit) and against the CPU. `fused`: whether it must be one dispatch.
void check_many(Backend& cpu, backend::vk::VulkanBackend& gpu, const std::vector<TestWeight>& weights,
                std::int64_t T, std::int64_t K, bool fused, unsigned seed) {
  SCOPED_TRACE(util::concat("T=", T, " K=", K, " weights=", weights.size()));
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), seed);
  Guarded xc(cpu, {T, K}, x), xg(gpu, {T, K}, x);
  std::vector<Tensor> wc, wg;
  std::vector<std::unique_ptr<Guarded>> yc, yg, ys;  // CPU, fused, separate
  for (const TestWeight& w : weights) {
    wc.push_back(cpu.resident(w.view()));
    wg.push_back(gpu.resident(w.view()));
    yc.push_back(std::make_unique<Guarded>(cpu, backend::Shape{T, w.rows()}));
    yg.push_back(std::make_unique<Guarded>(gpu, backend::Shape{T, w.rows()}));
    ys.push_back(std::make_unique<Guarded>(gpu, backend::Shape{T, w.rows()}));
  }
  std::vector<const Tensor*> wc_ptr, wg_ptr;
  std::vector<Tensor*> yc_ptr, yg_ptr;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    wc_ptr.push_back(&wc[i]);
    wg_ptr.push_back(&wg[i]);
    yc_ptr.push_back(&yc[i]->tensor());
    yg_ptr.push_back(&yg[i]->tensor());
  }
  cpu.matmul_many(xc.tensor(), wc_ptr, yc_ptr);
  gpu.reset_stats();
  gpu.matmul_many(xg.tensor(), wg_ptr, yg_ptr);
  const double dispatches = gpu.stats().at("vk_dispatches");
  if (fused) {
    EXPECT_EQ(dispatches, 1.0) << "matmul_many took more than one dispatch";
  }
  for (std::size_t i = 0; i < weights.size(); ++i) gpu.matmul(xg.tensor(), wg[i], ys[i]->tensor());

  for (std::size_t i = 0; i < weights.size(); ++i) {
    SCOPED_TRACE(util::concat("weight ", i, " N=", weights[i].rows()));
    const std::int64_t N = weights[i].rows();
    const std::vector<float>& w = weights[i].values();
    std::vector<double> scale(static_cast<std::size_t>(T * N));
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t n = 0; n < N; ++n) {
        double s = 0.0;
        for (std::int64_t k = 0; k < K; ++k) {
          s += std::abs(static_cast<double>(x[static_cast<std::size_t>(t * K + k)]) *
                        static_cast<double>(w[static_cast<std::size_t>(n * K + k)]));
        }
        scale[static_cast<std::size_t>(t * N + n)] = s;
      }
    }
    const std::vector<float> got = yg[i]->values();
    expect_same_bits(got, ys[i]->values(), "matmul_many against matmul");
    expect_near_cpu(got, yc[i]->values(), scale, kRtol, "matmul_many against the CPU");
    yg[i]->expect_guards_intact("matmul_many");
  }
}

class VulkanMatmulMany : public VulkanParamTest<OpCase> {};

TEST_P(VulkanMatmulMany, FusedMatchesMatmul) {
  const int bits = format::quant_bits(GetParam().dtype);
  unsigned seed = 2000;
  struct Form {
    int group;
    Dtype scale;
    std::int64_t K;
  };
  // K = 4096 + group: enough dequant8 blocks for the four-at-a-time loop of a workgroup team.
  for (const Form f : {Form{64, Dtype::bf16, 3 * 64}, Form{32, Dtype::f16, 4096 + 32}}) {
    SCOPED_TRACE(util::concat("bits=", bits, " group=", f.group, " scales=", format::dtype_name(f.scale)));
    const format::QuantParams params{.bits = bits, .group_size = f.group, .scale_dtype = f.scale};
    for (const std::vector<std::int64_t>& rows :
         {std::vector<std::int64_t>{37, 5, 64}, std::vector<std::int64_t>{5, 37}, std::vector<std::int64_t>{64, 1, 37, 5}}) {
      std::vector<TestWeight> weights;
      for (const std::int64_t N : rows) weights.push_back(quantized_weight(params, N, f.K, ++seed));
      for (std::int64_t T = 1; T <= 8; ++T) {
        if (f.K > 1024 && T != 1 && T != 3 && T != 8) continue;  // keep the long rows quick
        // x past one binding (smallrange's 64 KiB) takes the split matmuls.
        const bool fits = GetParam().config.max_storage_range == 0 ||
                          T * f.K * 4 + 512 <= static_cast<std::int64_t>(GetParam().config.max_storage_range);
        check_many(*cpu_, *gpu_, weights, T, f.K, fits, ++seed);
      }
    }
  }
}

TEST_P(VulkanMatmulMany, FallsBackToMatmul) {
  const int bits = format::quant_bits(GetParam().dtype);
  unsigned seed = 2100;
  const std::int64_t K = 128;
  const format::QuantParams params{.bits = bits, .group_size = 64, .scale_dtype = Dtype::bf16};
  const format::QuantParams other_bits{.bits = bits == 8 ? 4 : 8, .group_size = 64, .scale_dtype = Dtype::bf16};
  const format::QuantParams other_group{.bits = bits, .group_size = 32, .scale_dtype = Dtype::bf16};
  const format::QuantParams other_scale{.bits = bits, .group_size = 64, .scale_dtype = Dtype::f16};
  for (const format::QuantParams& second : {other_bits, other_group, other_scale}) {
    std::vector<TestWeight> weights;
    weights.push_back(quantized_weight(params, 37, K, ++seed));
    weights.push_back(quantized_weight(second, 5, K, ++seed));
    weights.push_back(quantized_weight(params, 64, K, ++seed));
    for (const std::int64_t T : {1, 4}) check_many(*cpu_, *gpu_, weights, T, K, false, ++seed);
  }
  {  // a float weight among quantized ones
    std::vector<TestWeight> weights;
    weights.push_back(quantized_weight(params, 37, K, ++seed));
    weights.push_back(float_weight(5, K, ++seed));
    check_many(*cpu_, *gpu_, weights, 2, K, false, ++seed);
  }
  {  // one weight; prefill (T past the decode maximum)
    std::vector<TestWeight> weights;
    weights.push_back(quantized_weight(params, 37, K, ++seed));
    check_many(*cpu_, *gpu_, weights, 3, K, true, ++seed);
    weights.push_back(quantized_weight(params, 5, K, ++seed));
    weights.push_back(quantized_weight(params, 64, K, ++seed));
    check_many(*cpu_, *gpu_, weights, 9, K, false, ++seed);
    check_many(*cpu_, *gpu_, weights, 17, K, false, ++seed);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanMatmulMany,
                         ::testing::ValuesIn(op_cases({Dtype::q8, Dtype::q4, Dtype::q3, Dtype::q2})), op_case_name);

TEST_F(VulkanTest, MatmulManyChecksItsArguments) {
  const std::int64_t T = 2, K = 64;
  const format::QuantParams params{.bits = 4, .group_size = 64, .scale_dtype = Dtype::bf16};
  const QuantizedWeight w(params, {5, K}, random_values(static_cast<std::size_t>(5 * K), 7));
  const Tensor wt = gpu_->resident(w.view());
  Tensor x = gpu_->empty({T, K}), y0 = gpu_->empty({T, 5}), y1 = gpu_->empty({T, 5});
  const std::vector<const Tensor*> two = {&wt, &wt};
  const std::vector<Tensor*> one = {&y0};
  EXPECT_THROW(gpu_->matmul_many(x, two, one), ShapeError);
  const std::vector<Tensor*> same = {&y0, &y0};  // overlapping outputs
  EXPECT_ANY_THROW(gpu_->matmul_many(x, two, same));
  Tensor wrong = gpu_->empty({T, 6});
  const std::vector<Tensor*> bad = {&y0, &wrong};  // falls back; matmul reports the shape
  EXPECT_THROW(gpu_->matmul_many(x, two, bad), ShapeError);
  const std::vector<Tensor*> ok = {&y0, &y1};
  EXPECT_NO_THROW(gpu_->matmul_many(x, two, ok));
}

}  // namespace
}  // namespace moeflux::test

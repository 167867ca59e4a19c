// norm_matmul and matmul_add on Vulkan against the CPU backend, whose base ops compose rms_norm,
// matmul and add: every weight dtype (f32, f16, bf16 through matmul_vec_norm; q8 to q2 through
// matmul_vec_q_norm) with norm weights of every float dtype, plain and zero-centered; T = 1, 3
// and 8 (the decode matvecs that fold the norm in) and 9 and 40 (rms_norm, then the tiled
// products); K of one quantization group and of several; two products of one x and `normed`
// written too; x as floats and as vec4s. matmul_add (y += x w^T) on every product kernel, the
// LM-head-sized quads one included. And which kernels a decode step's norm_matmul records.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

using format::Dtype;

// Relative to sum |x_k w_k| (x normalised): both sides sum float32 products in other orders, and
// the fused matvecs scale the sum by 1 / rms instead of each x; the quantized CPU kernels factor
// the groups' affine terms (quant_matmul_test.cpp).
constexpr double kRtol = 1e-4;
constexpr double kNormRtol = 1e-5;  // rms_norm_test.cpp's bound

// A weight of any stored dtype and the values it holds.
struct AnyWeight {
  AnyWeight(Dtype dtype, std::int64_t N, std::int64_t K, unsigned seed) {
    const std::vector<float> v = random_values(static_cast<std::size_t>(N * K), seed, -2.0f, 2.0f);
    if (format::is_quantized(dtype)) {
      quantized = std::make_unique<QuantizedWeight>(
          format::QuantParams{.bits = format::quant_bits(dtype), .group_size = 32, .scale_dtype = Dtype::bf16},
          backend::Shape{N, K}, v);
    } else {
      stored = std::make_unique<StoredWeight>(dtype, backend::Shape{N, K}, v);
    }
  }
  format::TensorView view() const { return quantized ? quantized->view() : stored->view(); }
  const std::vector<float>& values() const { return quantized ? quantized->values : stored->rounded; }
  std::unique_ptr<QuantizedWeight> quantized;
  std::unique_ptr<StoredWeight> stored;
};

// Per element of x w^T (+ y0): the magnitude its rounding errors grow with.
std::vector<double> product_scale(std::span<const float> x, const AnyWeight& w, std::int64_t T, std::int64_t K,
                                  std::int64_t N, std::span<const float> y0 = {}) {
  std::vector<double> scale(static_cast<std::size_t>(T * N));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t n = 0; n < N; ++n) {
      double s = y0.empty() ? 0.0 : std::abs(static_cast<double>(y0[static_cast<std::size_t>(t * N + n)]));
      for (std::int64_t k = 0; k < K; ++k) {
        s += std::abs(static_cast<double>(x[static_cast<std::size_t>(t * K + k)]) *
                      static_cast<double>(w.values()[static_cast<std::size_t>(n * K + k)]));
      }
      scale[static_cast<std::size_t>(t * N + n)] = s;
    }
  }
  return scale;
}

class VulkanNormMatmul : public VulkanParamTest<OpCase> {};

TEST_P(VulkanNormMatmul, MatchesCpu) {
  const Dtype dtype = GetParam().dtype;
  const bool quantized = format::is_quantized(dtype);
  unsigned seed = 5000;
  for (const std::int64_t K : quantized ? std::vector<std::int64_t>{32, 2048} : std::vector<std::int64_t>{7, 2048}) {
    for (const Dtype g_dtype : {Dtype::f32, Dtype::f16, Dtype::bf16}) {
      for (const bool zero_centered : {false, true}) {
        const std::int64_t N0 = 33, N1 = 130;
        const AnyWeight w0(dtype, N0, K, ++seed), w1(dtype, N1, K, ++seed);
        const float g_mid = zero_centered ? 0.0f : 1.0f;
        const StoredWeight g(g_dtype, {K}, random_values(static_cast<std::size_t>(K), ++seed, g_mid - 0.5f, g_mid + 0.5f));
        const backend::NormOptions options{.eps = 1e-6f, .zero_centered = zero_centered};
        for (const std::int64_t T : {1, 3, 8, 9, 40}) {
          const std::int64_t x_guard = T % 2 == 0 ? 40 : 37;  // x as vec4s, as floats
          SCOPED_TRACE(util::concat("K=", K, " norm ", format::dtype_name(g_dtype), " zero_centered=", zero_centered,
                                    " T=", T, " x at ", x_guard));
          const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), ++seed, -3.0f, 3.0f);

          Guarded xc(*cpu_, {T, K}, x), y0c(*cpu_, {T, N0}), y1c(*cpu_, {T, N1}), nc(*cpu_, {T, K});
          const Tensor wc[] = {cpu_->resident(w0.view()), cpu_->resident(w1.view())};
          Tensor yc[] = {y0c.tensor(), y1c.tensor()};
          cpu_->norm_matmul(xc.tensor(), cpu_->resident(g.view()), options, wc, yc, &nc.tensor());

          Guarded xg(*gpu_, {T, K}, x, x_guard), y0g(*gpu_, {T, N0}), y1g(*gpu_, {T, N1}), ng(*gpu_, {T, K});
          const Tensor wg[] = {gpu_->resident(w0.view()), gpu_->resident(w1.view())};
          Tensor yg[] = {y0g.tensor(), y1g.tensor()};
          gpu_->norm_matmul(xg.tensor(), gpu_->resident(g.view()), options, wg, yg, &ng.tensor());

          const std::vector<float> normed = nc.values();
          expect_near_cpu(ng.values(), normed, kNormRtol, "normed");
          expect_near_cpu(y0g.values(), y0c.values(), product_scale(normed, w0, T, K, N0), kRtol, "product 0");
          expect_near_cpu(y1g.values(), y1c.values(), product_scale(normed, w1, T, K, N1), kRtol, "product 1");
          for (const Guarded* out : {&y0g, &y1g, &ng}) out->expect_guards_intact("norm_matmul");
        }
      }
    }
  }
}

TEST_P(VulkanNormMatmul, MatmulAddAccumulates) {
  const Dtype dtype = GetParam().dtype;
  unsigned seed = 5500;
  struct Dims {
    std::int64_t T, K, N;
  };
  // The vec kernels, the tiled ones, and (quantized, 16,386 rows) matmul_vec_q_quads.
  for (const Dims d : {Dims{1, 64, 33}, Dims{3, 96, 70}, Dims{70, 64, 130}, Dims{1, 32, 16386}}) {
    SCOPED_TRACE(util::concat("T=", d.T, " K=", d.K, " N=", d.N));
    if (GetParam().config.max_storage_range > 0 && d.N * 4 > 65536) continue;  // y's row past one binding
    const AnyWeight w(dtype, d.N, d.K, ++seed);
    const std::vector<float> x = random_values(static_cast<std::size_t>(d.T * d.K), ++seed);
    const std::vector<float> y0 = random_values(static_cast<std::size_t>(d.T * d.N), ++seed, -50.0f, 50.0f);
    Guarded xc(*cpu_, {d.T, d.K}, x), yc(*cpu_, {d.T, d.N}, y0);
    cpu_->matmul_add(xc.tensor(), cpu_->resident(w.view()), yc.tensor());
    Guarded xg(*gpu_, {d.T, d.K}, x), yg(*gpu_, {d.T, d.N}, y0);
    gpu_->matmul_add(xg.tensor(), gpu_->resident(w.view()), yg.tensor());
    expect_near_cpu(yg.values(), yc.values(), product_scale(x, w, d.T, d.K, d.N, y0), kRtol, "matmul_add");
    yg.expect_guards_intact("matmul_add");
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanNormMatmul,
                         ::testing::ValuesIn(op_cases({Dtype::f32, Dtype::f16, Dtype::bf16, Dtype::q8, Dtype::q4,
                                                       Dtype::q3, Dtype::q2})),
                         op_case_name);

// A decode step's norm_matmul of few rows records one matvec per product, each normalising x
// itself, and rms_norm only for the `normed` the caller asks for; of many rows (past 1,024 in
// all), and a prefill's, rms_norm and then the plain products.
TEST(VulkanNormMatmulKernels, DecodeFoldsTheNormIntoTheMatvecs) {
  auto gpu = make_vulkan({.name = "profiled", .profile = true});
  const std::int64_t K = 256;
  const std::int64_t big = 1024 - 96 - 32 + 1;  // the rows of q, k and router plus this: 1,025
  const AnyWeight q(Dtype::q8, 96, K, 1), k(Dtype::q8, 32, K, 2), router(Dtype::bf16, 16, K, 3), o(Dtype::q8, big, K, 4);
  const StoredWeight g(Dtype::bf16, {K}, random_values(static_cast<std::size_t>(K), 5));
  const Tensor ws[] = {gpu->resident(q.view()), gpu->resident(k.view()), gpu->resident(router.view())};
  const Tensor many[] = {ws[0], ws[1], gpu->resident(o.view())};
  const Tensor gw = gpu->resident(g.view());
  struct Expected {
    std::int64_t T;
    bool normed, many_rows;
    std::map<std::string, double> commands;
  };
  const Expected cases[] = {
      {1, false, false, {{"matmul_vec_q_norm", 2}, {"matmul_vec_norm", 1}, {"rms_norm", 0}}},
      {8, true, false, {{"matmul_vec_q_norm", 2}, {"matmul_vec_norm", 1}, {"rms_norm", 1}}},
      {1, false, true, {{"matmul_vec_q_norm", 0}, {"rms_norm", 1}, {"matmul_vec_q", 3}}},
      {9, false, false, {{"matmul_vec_q_norm", 0}, {"rms_norm", 1}, {"matmul_tiled_q", 2}, {"matmul_tiled", 1}}},
  };
  for (const Expected& c : cases) {
    SCOPED_TRACE(util::concat("T=", c.T, c.many_rows ? ", many rows" : ""));
    Tensor x = gpu->empty({c.T, K}), normed = gpu->empty({c.T, K});
    gpu->upload(random_values(static_cast<std::size_t>(c.T * K), 6), x);
    Tensor ys[] = {gpu->empty({c.T, 96}), gpu->empty({c.T, 32}), gpu->empty({c.T, c.many_rows ? big : 16})};
    gpu->finish();
    const auto before = gpu->stats();
    gpu->norm_matmul(x, gw, {}, c.many_rows ? many : ws, ys, c.normed ? &normed : nullptr);
    gpu->finish();
    const auto after = gpu->stats();
    for (const auto& [kernel, n] : c.commands) {
      const auto count = [&](const std::map<std::string, double>& s) {
        const auto it = s.find("gpu_commands." + kernel);
        return it == s.end() ? 0.0 : it->second;
      };
      EXPECT_EQ(count(after) - count(before), n) << kernel;
    }
  }
  expect_no_validation_messages(*gpu);
}

TEST_F(VulkanTest, NormMatmulErrors) {
  const StoredWeight g(Dtype::f32, {8}, random_values(8, 1));
  const StoredWeight w(Dtype::f32, {4, 8}, random_values(32, 2));
  const Tensor gw = gpu_->resident(g.view()), ww = gpu_->resident(w.view());
  Tensor x = gpu_->empty({1, 8}), y = gpu_->empty({1, 4}), short_y = gpu_->empty({1, 3}), wide_x = gpu_->empty({1, 9});
  const Tensor ws[] = {ww};
  Tensor ys[] = {y}, short_ys[] = {short_y}, two_ys[] = {y, y};
  EXPECT_THROW(gpu_->norm_matmul(x, gw, {}, ws, short_ys, nullptr), ShapeError);
  EXPECT_THROW(gpu_->norm_matmul(x, gw, {}, ws, two_ys, nullptr), ShapeError);
  EXPECT_THROW(gpu_->norm_matmul(wide_x, gw, {}, ws, ys, nullptr), ShapeError);
  EXPECT_THROW(gpu_->norm_matmul(x, ww, {}, ws, ys, nullptr), ShapeError);  // a matrix as the norm weight
  EXPECT_THROW(gpu_->matmul_add(x, ww, short_y), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

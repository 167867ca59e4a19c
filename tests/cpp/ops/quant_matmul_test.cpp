// matmul with quantized (q8/q4/q3/q2, groups 32/64/128, bf16/f16 scales) and f16/bf16 weights,
// against a double-precision product of format's own dequantized values: decode row counts (the
// fused kernels) and prefill ones (dequantized tiles + sgemm), odd N, K from one group to past
// 4096, the AVX2 and the portable kernels, and identical bits from 1 and 3 threads.
#include <cstring>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"
#include "reference.h"
#include "stored_weight.h"

namespace moeflux::test {
namespace {

using backend::cpu::Simd;
using format::Dtype;

// Relative to sum |x_k w_k|: float32 sums over 8-lane partials and per-group scaling (q . x can
// be a few times larger than the sum of |x w| when the bias cancels it) stay well inside this.
constexpr double kRtol = 1e-5;

const std::vector<std::int64_t> kRows = {1, 2, 3, 4, 5, 8, 9, 17, 64};  // 1..8 fused, 9+ tiled
const std::vector<std::int64_t> kOutputs = {1, 7, 33, 257};

std::string simd_name(Simd simd) { return simd == Simd::avx2 ? "avx2" : "portable"; }

// y = x w^T on a fresh backend with `threads` workers; checks the guards of y.
std::vector<float> run_matmul(Simd simd, int threads, const StoredWeight& w, const std::vector<float>& x,
                              std::int64_t T) {
  auto backend = make_cpu_backend(threads, simd);
  EXPECT_EQ(backend_simd(*backend), simd);
  const std::int64_t N = w.shape[0], K = w.shape[1];
  const Tensor weight = backend->resident(w.view("proj.weight"));
  Guarded xt(*backend, {T, K}, x);
  Guarded y(*backend, {T, N});
  backend->matmul(xt.tensor(), weight, y.tensor());
  y.expect_guards_intact("matmul");
  return y.values();
}

// Every T for one weight: the reference bound at 1 thread, the same bits at 3.
void check_weight(Simd simd, const StoredWeight& w, unsigned seed) {
  const std::int64_t N = w.shape[0], K = w.shape[1];
  for (const std::int64_t T : kRows) {
    SCOPED_TRACE(util::concat("T=", T, " N=", N, " K=", K, " ", simd_name(simd)));
    const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), seed + static_cast<unsigned>(T));
    const std::vector<float> one = run_matmul(simd, 1, w, x, T);
    expect_close(one, matmul_ref(x, w.values, T, K, N), kRtol, "matmul");
    const std::vector<float> three = run_matmul(simd, 3, w, x, T);
    ASSERT_EQ(three.size(), one.size());
    EXPECT_EQ(std::memcmp(three.data(), one.data(), one.size() * sizeof(float)), 0)
        << "1 and 3 threads gave different bits";
  }
}

void skip_unless_available(Simd simd) {
  if (simd == Simd::avx2 && backend::cpu::best_simd() != Simd::avx2) {
    GTEST_SKIP() << "unsupported: this CPU lacks AVX2, FMA or F16C; the avx2 kernels are not tested";
  }
}

using QuantParam = std::tuple<int, int, Dtype, Simd>;  // bits, group, scale dtype, kernels
class QuantMatmul : public ::testing::TestWithParam<QuantParam> {};

TEST_P(QuantMatmul, MatchesReferenceWithIdenticalBitsAcrossThreads) {
  const auto [bits, group, scale_dtype, simd] = GetParam();
  skip_unless_available(simd);
  const format::QuantParams quant{bits, group, scale_dtype};
  unsigned seed = 300;
  for (const std::int64_t K : {std::int64_t{group}, std::int64_t{3} * group, std::int64_t{4096} + group}) {
    for (const std::int64_t N : kOutputs) {
      const StoredWeight w = make_weight(format::quantized_dtype(bits), N, K, seed++, quant);
      check_weight(simd, w, seed);
    }
  }
}

std::string quant_name(const ::testing::TestParamInfo<QuantParam>& info) {
  const auto [bits, group, scale_dtype, simd] = info.param;
  return util::concat("q", bits, "_g", group, "_", format::dtype_name(scale_dtype), "_", simd_name(simd));
}

INSTANTIATE_TEST_SUITE_P(Variants, QuantMatmul,
                         ::testing::Combine(::testing::Values(8, 4, 3, 2), ::testing::Values(32, 64, 128),
                                            ::testing::Values(Dtype::bf16, Dtype::f16),
                                            ::testing::Values(Simd::avx2, Simd::portable)),
                         quant_name);

using HalfParam = std::tuple<Dtype, Simd>;
class HalfMatmul : public ::testing::TestWithParam<HalfParam> {};

TEST_P(HalfMatmul, MatchesReferenceWithIdenticalBitsAcrossThreads) {
  const auto [dtype, simd] = GetParam();
  skip_unless_available(simd);
  unsigned seed = 500;
  for (const std::int64_t K : {1, 7, 32, 67, 4099}) {
    for (const std::int64_t N : kOutputs) {
      const StoredWeight w = make_weight(dtype, N, K, seed++);
      check_weight(simd, w, seed);
    }
  }
}

std::string half_name(const ::testing::TestParamInfo<HalfParam>& info) {
  const auto [dtype, simd] = info.param;
  return util::concat(format::dtype_name(dtype), "_", simd_name(simd));
}

INSTANTIATE_TEST_SUITE_P(Variants, HalfMatmul,
                         ::testing::Combine(::testing::Values(Dtype::f16, Dtype::bf16),
                                            ::testing::Values(Simd::avx2, Simd::portable)),
                         half_name);

// The same weight as a resident view and as float32 through OpenBLAS: f32 stays bit-stable
// across thread counts too.
TEST(F32Matmul, IdenticalBitsAcrossThreads) {
  const StoredWeight w = make_weight(Dtype::f32, 257, 4099, 77);
  check_weight(backend::cpu::best_simd(), w, 78);
}

TEST(QuantMatmulErrors, BadParametersAndShapes) {
  auto backend = make_backend();
  StoredWeight w = make_weight(Dtype::q4, 8, 128, 5, {4, 64, Dtype::bf16});
  format::TensorView view = w.view("model.layers.0.mlp.gate_proj.weight");
  view.group_size = 48;
  EXPECT_THROW(backend->resident(view), ConfigError);
  view = w.view("w");
  view.scale_dtype = Dtype::f32;
  EXPECT_THROW(backend->resident(view), ConfigError);
  view = w.view("w");
  view.nbytes -= 1;
  try {
    backend->resident(view);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
  view = w.view("w");
  view.shape = {8, 2, 64};
  EXPECT_THROW(backend->resident(view), ShapeError);
  const Tensor weight = backend->resident(w.view("w"));
  EXPECT_TRUE(weight.quantized());
  EXPECT_EQ(weight.quant().group_size, 64);
  Tensor x = backend->empty({2, 127});
  Tensor y = backend->empty({2, 8});
  EXPECT_THROW(backend->matmul(x, weight, y), ShapeError);
  Tensor x_ok = backend->empty({2, 128});
  Tensor y_bad = backend->empty({2, 9});
  EXPECT_THROW(backend->matmul(x_ok, weight, y_bad), ShapeError);
  // A resident weight is read-only: ops that write refuse it.
  const StoredWeight half = make_weight(Dtype::f16, 2, 128, 6);
  Tensor target = backend->resident(half.view("w16"));
  EXPECT_THROW(backend->add(x_ok, x_ok, target), Unsupported);
}

}  // namespace
}  // namespace moeflux::test

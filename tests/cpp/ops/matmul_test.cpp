// matmul (y = x w^T) against a double reference with the error bound of a float32 dot product,
// rtol * sum |x_k w_k|: single rows (sgemv) and batches (sgemm), odd and long K, weights made
// resident from f32, f16 and bf16, inputs and outputs as views.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {
namespace {

struct MatmulCase {
  std::int64_t T, K, N;
};

void PrintTo(const MatmulCase& c, std::ostream* os) {
  *os << "T=" << c.T << " K=" << c.K << " N=" << c.N;
}

class Matmul : public ::testing::TestWithParam<MatmulCase> {};

// Relative to sum |x_k w_k|, a blocked float32 dot product errs by a few ulps at most here.
constexpr double kRtol = 1e-6;

TEST_P(Matmul, MatchesReference) {
  const MatmulCase c = GetParam();
  auto backend = make_backend();
  const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.K), 21);
  const std::vector<float> w = random_values(static_cast<std::size_t>(c.N * c.K), 22);
  Guarded xt(*backend, {c.T, c.K}, x);
  Guarded wt(*backend, {c.N, c.K}, w);
  Guarded y(*backend, {c.T, c.N});
  backend->matmul(xt.tensor(), wt.tensor(), y.tensor());
  expect_close(y.values(), matmul_ref(x, w, c.T, c.K, c.N), kRtol, "matmul");
  y.expect_guards_intact("matmul");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Matmul,
    ::testing::Values(MatmulCase{1, 1, 1}, MatmulCase{1, 31, 7}, MatmulCase{1, 4099, 63},
                      MatmulCase{2, 1, 5}, MatmulCase{3, 32, 33}, MatmulCase{33, 64, 1},
                      MatmulCase{31, 65, 32}, MatmulCase{65, 63, 64}, MatmulCase{64, 4099, 65},
                      MatmulCase{5, 4100, 13}),
    [](const auto& test) {
      return util::concat("T", test.param.T, "_K", test.param.K, "_N", test.param.N);
    });

class MatmulResident : public ::testing::TestWithParam<format::Dtype> {};

TEST_P(MatmulResident, UsesTheWidenedWeight) {
  const format::Dtype dtype = GetParam();
  auto backend = make_backend();
  const std::int64_t T = 4, K = 67, N = 29;
  const std::vector<float> values = random_values(static_cast<std::size_t>(N * K), 23);
  std::vector<std::byte> bytes(values.size() * format::dtype_size(dtype));
  format::from_f32(values.data(), dtype, values.size(), bytes.data());
  const Tensor w = backend->resident({"proj.weight", dtype, {N, K}, bytes.data(), bytes.size()});
  std::vector<float> w_f32(values.size());
  format::to_f32(bytes.data(), dtype, values.size(), w_f32.data());
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * K), 24);
  Guarded xt(*backend, {T, K}, x);
  Guarded y(*backend, {T, N});
  backend->matmul(xt.tensor(), w, y.tensor());
  expect_close(y.values(), matmul_ref(x, w_f32, T, K, N), kRtol, "matmul resident");
  y.expect_guards_intact("matmul resident");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, MatmulResident,
                         ::testing::Values(format::Dtype::f32, format::Dtype::f16, format::Dtype::bf16),
                         [](const auto& test) { return std::string(format::dtype_name(test.param)); });

TEST(MatmulErrors, ShapesAndAliasing) {
  auto backend = make_backend();
  Tensor x = backend->empty({3, 8});
  Tensor w = backend->empty({5, 8});
  Tensor y = backend->empty({3, 5});
  Tensor w_bad = backend->empty({5, 7});
  EXPECT_THROW(backend->matmul(x, w_bad, y), ShapeError);
  Tensor y_bad = backend->empty({3, 4});
  EXPECT_THROW(backend->matmul(x, w, y_bad), ShapeError);
  Tensor x1 = backend->empty({8});
  EXPECT_THROW(backend->matmul(x1, w, y), ShapeError);
  Tensor square = backend->empty({8, 8});
  Tensor sq_w = backend->empty({8, 8});
  EXPECT_THROW(backend->matmul(square, sq_w, square), ShapeError);  // y may not alias x
}

// The base ops a backend may fuse: norm_matmul is rms_norm then each matmul, matmul_add is matmul
// then add, bit for bit (the Vulkan tests hold the fused kernels to these).
TEST(MatmulComposed, NormMatmulAndMatmulAddAreTheirParts) {
  auto backend = make_backend();
  const std::int64_t T = 3, K = 67, N0 = 29, N1 = 5;
  Guarded x(*backend, {T, K}, random_values(static_cast<std::size_t>(T * K), 31, -3.0f, 3.0f));
  Guarded g(*backend, {K}, random_values(static_cast<std::size_t>(K), 32));
  Guarded w0(*backend, {N0, K}, random_values(static_cast<std::size_t>(N0 * K), 33));
  Guarded w1(*backend, {N1, K}, random_values(static_cast<std::size_t>(N1 * K), 34));
  const backend::NormOptions options{.eps = 1e-5f, .zero_centered = true};

  Guarded normed(*backend, {T, K}), y0(*backend, {T, N0}), y1(*backend, {T, N1});
  const Tensor ws[] = {w0.tensor(), w1.tensor()};
  Tensor ys[] = {y0.tensor(), y1.tensor()};
  backend->norm_matmul(x.tensor(), g.tensor(), options, ws, ys, &normed.tensor());
  Guarded want_normed(*backend, {T, K}), want0(*backend, {T, N0}), want1(*backend, {T, N1});
  backend->rms_norm(x.tensor(), g.tensor(), options, want_normed.tensor());
  backend->matmul(want_normed.tensor(), w0.tensor(), want0.tensor());
  backend->matmul(want_normed.tensor(), w1.tensor(), want1.tensor());
  EXPECT_EQ(normed.values(), want_normed.values());
  EXPECT_EQ(y0.values(), want0.values());
  EXPECT_EQ(y1.values(), want1.values());
  for (const Guarded* out : {&normed, &y0, &y1}) out->expect_guards_intact("norm_matmul");
  Tensor too_few[] = {y0.tensor()};
  EXPECT_THROW(backend->norm_matmul(x.tensor(), g.tensor(), options, ws, too_few, nullptr), ShapeError);

  const std::vector<float> start = random_values(static_cast<std::size_t>(T * N0), 35, -40.0f, 40.0f);
  Guarded acc(*backend, {T, N0}, start), product(*backend, {T, N0}), want(*backend, {T, N0}, start);
  backend->matmul_add(x.tensor(), w0.tensor(), acc.tensor());
  backend->matmul(x.tensor(), w0.tensor(), product.tensor());
  backend->add(want.tensor(), product.tensor(), want.tensor());
  EXPECT_EQ(acc.values(), want.values());
  acc.expect_guards_intact("matmul_add");
}

}  // namespace
}  // namespace moeflux::test

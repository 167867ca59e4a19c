// rms_norm against a double reference: odd widths up to a row longer than 4096, plain and
// zero-centered weights, per-head [T, heads, D] inputs, views and in-place use; rms_scale (another
// tensor's rows times x's 1 / rms) and apply_norm_weight (x * w alone) likewise.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {
namespace {

struct NormCase {
  std::int64_t rows, cols;
  bool zero_centered;
};

void PrintTo(const NormCase& c, std::ostream* os) {
  *os << "rows=" << c.rows << " cols=" << c.cols << " zero_centered=" << c.zero_centered;
}

class RmsNorm : public ::testing::TestWithParam<NormCase> {};

// Each element goes through a float32 mean of squares, 1/sqrt and two products: a few ulps.
constexpr double kRtol = 1e-6;

TEST_P(RmsNorm, MatchesReference) {
  const NormCase c = GetParam();
  auto backend = make_backend();
  const auto n = static_cast<std::size_t>(c.rows * c.cols);
  const std::vector<float> x = random_values(n, 11, -2.0f, 2.0f);
  // Zero-centered weights sit near 0, so 1 + w crosses zero too.
  const std::vector<float> w = random_values(static_cast<std::size_t>(c.cols), 12, -1.5f, 1.5f);
  Guarded xt(*backend, {c.rows, c.cols}, x);
  Guarded wt(*backend, {c.cols}, w);
  Guarded out(*backend, {c.rows, c.cols});
  const backend::NormOptions options{.eps = 1e-6f, .zero_centered = c.zero_centered};
  backend->rms_norm(xt.tensor(), wt.tensor(), options, out.tensor());
  const Reference ref = rms_norm_ref(x, w, c.cols, 1e-6, c.zero_centered);
  expect_close(out.values(), ref, kRtol, "rms_norm");
  out.expect_guards_intact("rms_norm");

  // In place: out is x.
  backend->rms_norm(xt.tensor(), wt.tensor(), options, xt.tensor());
  expect_close(xt.values(), ref, kRtol, "rms_norm in place");
  xt.expect_guards_intact("rms_norm in place");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNorm,
    ::testing::Values(NormCase{1, 1, false}, NormCase{3, 7, false}, NormCase{2, 31, true},
                      NormCase{5, 32, false}, NormCase{4, 33, true}, NormCase{1, 63, false},
                      NormCase{2, 64, true}, NormCase{3, 65, false}, NormCase{2, 4099, false},
                      NormCase{3, 4099, true}),
    [](const auto& test) {
      return util::concat("R", test.param.rows, "_C", test.param.cols,
                          test.param.zero_centered ? "_zero_centered" : "");
    });

TEST(RmsNormHeads, NormalisesEachHeadOfARowView) {
  // q/k norms: x [T, heads, D] with w [D]; x is rows 1..3 of a larger tensor.
  auto backend = make_backend();
  const std::int64_t T = 3, heads = 5, D = 65;
  const std::vector<float> all = random_values(static_cast<std::size_t>((T + 2) * heads * D), 13);
  Guarded big(*backend, {T + 2, heads, D}, all);
  const Tensor x = big.tensor().rows(1, T);
  const std::vector<float> w = random_values(static_cast<std::size_t>(D), 14);
  Tensor wt = backend->empty({D});
  backend->upload(w, wt);
  Guarded out(*backend, {T, heads, D});
  backend->rms_norm(x, wt, {.eps = 1e-5f, .zero_centered = false}, out.tensor());
  const std::vector<float> x_rows(all.begin() + heads * D, all.begin() + (T + 1) * heads * D);
  expect_close(out.values(), rms_norm_ref(x_rows, w, D, 1e-5, false), kRtol, "rms_norm heads");
  out.expect_guards_intact("rms_norm heads");
}

TEST(RmsScale, MatchesReference) {
  auto backend = make_backend();
  struct Case {
    std::int64_t T, H;
    Shape y;
  };
  const Case cases[] = {{1, 1, {1, 1}}, {1, 96, {1, 4, 8}}, {3, 33, {3, 65}}, {2, 4099, {2, 7}}};
  unsigned seed = 30;
  for (const Case& c : cases) {
    SCOPED_TRACE(util::concat("T=", c.T, " H=", c.H, " y=", format::shape_string(c.y)));
    const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.H), ++seed, -2.0f, 2.0f);
    std::int64_t n = 1;
    for (const std::int64_t s : c.y) n *= s;
    const std::vector<float> y = random_values(static_cast<std::size_t>(n), ++seed, -3.0f, 3.0f);
    Guarded xt(*backend, {c.T, c.H}, x), yt(*backend, c.y, y), out(*backend, c.y);
    backend->rms_scale(xt.tensor(), 1e-5f, yt.tensor(), out.tensor());
    const Reference ref = rms_scale_ref(x, y, c.T, 1e-5);
    expect_close(out.values(), ref, kRtol, "rms_scale");
    out.expect_guards_intact("rms_scale");
    backend->rms_scale(xt.tensor(), 1e-5f, yt.tensor(), yt.tensor());  // in place
    expect_close(yt.values(), ref, kRtol, "rms_scale in place");
    yt.expect_guards_intact("rms_scale in place");
  }
  Tensor x = backend->empty({2, 8}), y = backend->empty({2, 5}), y3 = backend->empty({3, 5});
  Tensor out4 = backend->empty({2, 4});
  EXPECT_THROW(backend->rms_scale(x, 1e-6f, y3, y3), ShapeError);    // rows of y != rows of x
  EXPECT_THROW(backend->rms_scale(x, 1e-6f, y, out4), ShapeError);   // out unlike y
  EXPECT_THROW(backend->rms_scale(x.view({16}), 1e-6f, y, y), ShapeError);  // x not [T, H]
}

TEST(ApplyNormWeight, IsOneProductPerElement) {
  auto backend = make_backend();
  const std::int64_t R = 3, C = 65;
  const std::vector<float> x = random_values(static_cast<std::size_t>(R * C), 40, -2.0f, 2.0f);
  const std::vector<float> w = random_values(static_cast<std::size_t>(C), 41, -1.5f, 1.5f);
  Guarded xt(*backend, {R, C}, x), wt(*backend, {C}, w), out(*backend, {R, C});
  for (const bool zero_centered : {false, true}) {
    backend->apply_norm_weight(xt.tensor(), wt.tensor(), {.eps = 1e-6f, .zero_centered = zero_centered}, out.tensor());
    std::vector<float> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float wc = w[i % static_cast<std::size_t>(C)];
      want[i] = x[i] * (zero_centered ? 1.0f + wc : wc);
    }
    EXPECT_EQ(out.values(), want) << "zero_centered=" << zero_centered;
    out.expect_guards_intact("apply_norm_weight");
  }
  Tensor w7 = backend->empty({7});
  EXPECT_THROW(backend->apply_norm_weight(xt.tensor(), w7, {}, out.tensor()), ShapeError);
}

TEST(RmsNormErrors, ShapesAndPartialOverlap) {
  auto backend = make_backend();
  Tensor x = backend->empty({4, 8});
  Tensor w = backend->empty({8});
  Tensor out = backend->empty({4, 8});
  Tensor w7 = backend->empty({7});
  EXPECT_THROW(backend->rms_norm(x, w7, {}, out), ShapeError);
  Tensor out_small = backend->empty({3, 8});
  EXPECT_THROW(backend->rms_norm(x, w, {}, out_small), ShapeError);
  Tensor shifted = x.view({32}).rows(8, 24).view({3, 8});
  Tensor x3 = x.rows(0, 3);
  EXPECT_THROW(backend->rms_norm(x3, w, {}, shifted), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

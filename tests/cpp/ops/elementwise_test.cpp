// swiglu, add and sigmoid_mul against double references over odd lengths up to rows longer than
// 4096, in place and into guarded outputs; sigmoid_mul with one gate per row, per element and
// per group of columns.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {
namespace {

// One exp, a division and a product: a few ulps.
constexpr double kRtol = 1e-6;

class Elementwise : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(Elementwise, Swiglu) {
  const std::int64_t C = GetParam();
  auto backend = make_backend();
  const std::vector<float> gate = random_values(static_cast<std::size_t>(3 * C), 41, -12.0f, 12.0f);
  const std::vector<float> up = random_values(static_cast<std::size_t>(3 * C), 42, -2.0f, 2.0f);
  Guarded g(*backend, {3, C}, gate);
  Guarded u(*backend, {3, C}, up);
  Guarded out(*backend, {3, C});
  backend->swiglu(g.tensor(), u.tensor(), out.tensor());
  const Reference ref = swiglu_ref(gate, up);
  expect_close(out.values(), ref, kRtol, "swiglu");
  out.expect_guards_intact("swiglu");
  backend->swiglu(g.tensor(), u.tensor(), g.tensor());  // in place over gate
  expect_close(g.values(), ref, kRtol, "swiglu in place");
  g.expect_guards_intact("swiglu in place");
}

TEST_P(Elementwise, Add) {
  const std::int64_t C = GetParam();
  auto backend = make_backend();
  const std::vector<float> a = random_values(static_cast<std::size_t>(2 * C), 43, -5.0f, 5.0f);
  const std::vector<float> b = random_values(static_cast<std::size_t>(2 * C), 44);
  Guarded at(*backend, {2, C}, a);
  Guarded bt(*backend, {2, C}, b);
  Guarded out(*backend, {2, C});
  backend->add(at.tensor(), bt.tensor(), out.tensor());
  // One rounding of the exact sum: half an ulp.
  const Reference ref = add_ref(a, b);
  expect_close(out.values(), ref, 6e-8, "add");
  out.expect_guards_intact("add");
  backend->add(at.tensor(), bt.tensor(), bt.tensor());  // the residual pattern: b += a
  expect_close(bt.values(), ref, 6e-8, "add in place");
  bt.expect_guards_intact("add in place");
}

TEST_P(Elementwise, SigmoidMul) {
  const std::int64_t C = GetParam();
  auto backend = make_backend();
  const std::int64_t T = 3;
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * C), 45, -3.0f, 3.0f);
  std::vector<std::int64_t> groups = {1, C};
  if (C % 3 == 0) groups.push_back(3);
  for (const std::int64_t G : groups) {
    SCOPED_TRACE(util::concat("G = ", G));
    const std::vector<float> gate = random_values(static_cast<std::size_t>(T * G), 46, -9.0f, 9.0f);
    Guarded gt(*backend, {T, G}, gate);
    Guarded xt(*backend, {T, C}, x);
    Guarded out(*backend, {T, C});
    backend->sigmoid_mul(gt.tensor(), xt.tensor(), out.tensor());
    const Reference ref = sigmoid_mul_ref(gate, x, T);
    expect_close(out.values(), ref, kRtol, "sigmoid_mul");
    out.expect_guards_intact("sigmoid_mul");
    backend->sigmoid_mul(gt.tensor(), xt.tensor(), xt.tensor());
    expect_close(xt.values(), ref, kRtol, "sigmoid_mul in place");
  }
}

INSTANTIATE_TEST_SUITE_P(Widths, Elementwise, ::testing::Values(1, 7, 31, 32, 33, 63, 64, 65, 4101),
                         [](const auto& test) { return util::concat("C", test.param); });

TEST(ElementwiseErrors, Shapes) {
  auto backend = make_backend();
  Tensor a = backend->empty({2, 6});
  Tensor b = backend->empty({2, 5});
  Tensor out = backend->empty({2, 6});
  EXPECT_THROW(backend->swiglu(a, b, out), ShapeError);
  EXPECT_THROW(backend->add(a, b, out), ShapeError);
  Tensor gate4 = backend->empty({2, 4});
  EXPECT_THROW(backend->sigmoid_mul(gate4, a, out), ShapeError);  // 4 does not divide 6
  Tensor gate_rows = backend->empty({3, 2});
  EXPECT_THROW(backend->sigmoid_mul(gate_rows, a, out), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

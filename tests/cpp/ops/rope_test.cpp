// rope against a double reference (angles in float32, as the contract says): full and partial
// rotary dimensions, YaRN-style attention_scaling, large positions, a view rotated in place.
// Channels past rotary_dim must come back bit for bit.
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {
namespace {

struct RopeCase {
  std::int64_t T, heads, D;
  int rotary_dim;
  float scaling;
  std::int32_t first_position;
};

// inv_freq[j] = base^(-2j / rotary_dim), as transformers' default rope init.
std::vector<float> inv_freq_for(int rotary_dim, double base) {
  std::vector<float> out(static_cast<std::size_t>(rotary_dim / 2));
  for (std::size_t j = 0; j < out.size(); ++j) {
    out[j] = static_cast<float>(1.0 / std::pow(base, 2.0 * static_cast<double>(j) / rotary_dim));
  }
  return out;
}

void PrintTo(const RopeCase& c, std::ostream* os) {
  *os << "T=" << c.T << " heads=" << c.heads << " D=" << c.D << " rotary_dim=" << c.rotary_dim
      << " scaling=" << c.scaling << " first_position=" << c.first_position;
}

class Rope : public ::testing::TestWithParam<RopeCase> {};

// cos/sin of float32 (1 ulp) times scaling, then two products and a sum: a few ulps of |a| + |b|.
constexpr double kRtol = 1e-6;

TEST_P(Rope, MatchesReference) {
  const RopeCase c = GetParam();
  auto backend = make_backend();
  const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.heads * c.D), 31);
  Guarded xt(*backend, {c.T, c.heads, c.D}, x);
  std::vector<std::int32_t> positions;
  for (std::int64_t t = 0; t < c.T; ++t) {
    positions.push_back(c.first_position + static_cast<std::int32_t>(t * 3 % 7));  // not monotone
  }
  const backend::RopeOptions options{.rotary_dim = c.rotary_dim,
                                     .inv_freq = inv_freq_for(c.rotary_dim, 1.0e6),
                                     .attention_scaling = c.scaling};
  backend->rope(xt.tensor(), positions, options);
  const Reference ref =
      rope_ref(x, positions, c.heads, c.D, c.rotary_dim, options.inv_freq, c.scaling);
  expect_close(xt.values(), ref, kRtol, "rope");
  xt.expect_guards_intact("rope");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Rope,
    ::testing::Values(RopeCase{1, 1, 2, 2, 1.0f, 0}, RopeCase{3, 4, 64, 64, 1.0f, 5},
                      RopeCase{5, 3, 128, 32, 1.0f, 17},  // partial rotary (factor 0.25)
                      RopeCase{2, 2, 65, 64, 1.0f, 100}, RopeCase{7, 1, 33, 2, 1.0f, 3},
                      RopeCase{4, 5, 64, 64, 1.2079f, 40000},  // YaRN scaling, far positions
                      RopeCase{1, 31, 256, 64, 1.0f, 4097}),
    [](const auto& test) {
      const RopeCase& c = test.param;
      return util::concat("T", c.T, "_H", c.heads, "_D", c.D, "_R", c.rotary_dim,
                          c.scaling != 1.0f ? "_scaled" : "", "_P", c.first_position);
    });

TEST(RopeErrors, BadOptions) {
  auto backend = make_backend();
  Tensor x = backend->empty({2, 3, 8});
  const std::vector<std::int32_t> two = {0, 1};
  EXPECT_THROW(backend->rope(x, std::vector<std::int32_t>{0}, {8, inv_freq_for(8, 1e4), 1.0f}),
               ShapeError);
  EXPECT_THROW(backend->rope(x, two, {10, inv_freq_for(10, 1e4), 1.0f}), ShapeError);
  EXPECT_THROW(backend->rope(x, two, {7, inv_freq_for(6, 1e4), 1.0f}), ShapeError);
  EXPECT_THROW(backend->rope(x, two, {8, inv_freq_for(6, 1e4), 1.0f}), ShapeError);
  Tensor flat = backend->empty({2, 24});
  EXPECT_THROW(backend->rope(flat, two, {8, inv_freq_for(8, 1e4), 1.0f}), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

// attention against a double reference: GQA ratios 1 and > 1, n_past > 0, sliding windows,
// Dv != D, more than 4096 cache rows. Cache rows no query may see are NaN, so reading one fails.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {

void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << "T=" << c.T << " nh=" << c.nh << " nkv=" << c.nkv << " D=" << c.D << " Dv=" << c.Dv
      << " capacity=" << c.capacity << " n_past=" << c.n_past << " window=" << c.window;
}

namespace {

// Relative to sum_j p_j |v_j|: score errors of ~1e-7 move p by as much, plus the float32 sums
// over up to a few thousand keys.
constexpr double kRtol = 2e-6;

// Random cache rows, with NaN in every row outside [first visible row, last query row].
std::vector<float> cache_values(const AttentionCase& c, std::int64_t row, unsigned seed) {
  std::vector<float> values = random_values(static_cast<std::size_t>(c.capacity * row), seed);
  const std::int64_t last = c.n_past + c.T - 1;
  const std::int64_t first = c.window > 0 ? std::max<std::int64_t>(0, c.n_past - c.window + 1) : 0;
  for (std::int64_t r = 0; r < c.capacity; ++r) {
    if (r >= first && r <= last) continue;
    std::fill_n(values.begin() + r * row, row, std::numeric_limits<float>::quiet_NaN());
  }
  return values;
}

std::vector<float> run_attention(Backend& backend, const AttentionCase& c, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& v) {
  Guarded qt(backend, {c.T, c.nh, c.D}, q);
  Guarded kt(backend, {c.capacity, c.nkv, c.D}, k);
  Guarded vt(backend, {c.capacity, c.nkv, c.Dv}, v);
  Guarded out(backend, {c.T, c.nh, c.Dv});
  const backend::AttentionOptions options{.scale = c.scale, .n_past = c.n_past,
                                          .sliding_window = c.window};
  backend.attention(qt.tensor(), kt.tensor(), vt.tensor(), options, out.tensor());
  out.expect_guards_intact("attention");
  return out.values();
}

class Attention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(Attention, MatchesReference) {
  const AttentionCase c = GetParam();
  const std::vector<float> q = random_values(static_cast<std::size_t>(c.T * c.nh * c.D), 51, -2.0f, 2.0f);
  const std::vector<float> k = cache_values(c, c.nkv * c.D, 52);
  const std::vector<float> v = cache_values(c, c.nkv * c.Dv, 53);
  const Reference ref = attention_ref(q, k, v, c);
  auto one_thread = make_backend(1);
  const std::vector<float> got = run_attention(*one_thread, c, q, k, v);
  expect_close(got, ref, kRtol, "attention");
  // Splitting heads over threads must not change a single bit.
  auto four_threads = make_backend(4);
  const std::vector<float> split = run_attention(*four_threads, c, q, k, v);
  ASSERT_EQ(split.size(), got.size());
  EXPECT_EQ(std::memcmp(split.data(), got.data(), got.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Attention,
    ::testing::Values(
        AttentionCase{1, 1, 1, 1, 1, 1, 0, 0, 1.0f},
        AttentionCase{5, 4, 4, 64, 64, 8, 0, 0, 0.125f},        // GQA 1, prefill
        AttentionCase{3, 8, 2, 33, 33, 40, 31, 0, 0.17f},       // GQA 4, n_past
        AttentionCase{1, 6, 3, 64, 32, 100, 70, 0, 0.125f},     // decode, Dv != D
        AttentionCase{7, 4, 1, 65, 65, 20, 9, 4, 0.124f},       // sliding window, MQA
        AttentionCase{17, 2, 2, 31, 31, 17, 0, 5, 0.18f},       // window inside one prefill
        AttentionCase{4, 6, 2, 63, 63, 70, 60, 1, 0.126f},      // window of one: p = 1
        AttentionCase{2, 4, 1, 128, 128, 4200, 4097, 0, 0.0884f}),  // > 4096 keys, threaded
    [](const auto& test) {
      const AttentionCase& c = test.param;
      return util::concat("T", c.T, "_nh", c.nh, "_nkv", c.nkv, "_D", c.D, "_Dv", c.Dv, "_past",
                          c.n_past, "_W", c.window);
    });

TEST(AttentionErrors, Shapes) {
  auto backend = make_backend();
  Tensor q = backend->empty({2, 4, 8});
  Tensor k = backend->empty({5, 2, 8});
  Tensor v = backend->empty({5, 2, 6});
  Tensor out = backend->empty({2, 4, 6});
  EXPECT_NO_THROW(backend->attention(q, k, v, {.scale = 1.0f, .n_past = 3}, out));
  EXPECT_THROW(backend->attention(q, k, v, {.scale = 1.0f, .n_past = 4}, out), ShapeError);
  EXPECT_THROW(backend->attention(q, k, v, {.scale = 1.0f, .n_past = -1}, out), ShapeError);
  EXPECT_THROW(backend->attention(q, k, v, {.scale = 1.0f, .n_past = 0, .sliding_window = -1}, out),
               ShapeError);
  Tensor k3 = backend->empty({5, 3, 8});
  Tensor v3 = backend->empty({5, 3, 6});
  EXPECT_THROW(backend->attention(q, k3, v3, {}, out), ShapeError);  // 3 does not divide 4
  Tensor out_bad = backend->empty({2, 4, 8});
  EXPECT_THROW(backend->attention(q, k, v, {}, out_bad), ShapeError);
  Tensor k_short = backend->empty({4, 2, 8});
  EXPECT_THROW(backend->attention(q, k_short, v, {}, out), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

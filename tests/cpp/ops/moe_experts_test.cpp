// moe_experts against "dequantize with format::to_f32, then loops in double": f32, f16 and bf16
// experts (mixed in one call too), k = 1 and k > 1, every token on one expert, rows longer than
// 4096, unaligned f32 bytes. The output starts poisoned: the op must write all of it.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"
#include "reference.h"

namespace moeflux::test {
namespace {

using backend::ExpertWeights;
using backend::MoeRouting;
using format::Dtype;

struct MoeCase {
  std::int64_t T, H, I;
  int k, n_experts;
  std::vector<Dtype> dtypes;  // cycled over the experts
  bool one_expert = false;    // every token picks expert 2 (k = 1)
  std::string name;
};

StoredExpert make_expert(Dtype dtype, std::int64_t H, std::int64_t I, unsigned seed) {
  auto stored = [&](std::int64_t n, unsigned s) {
    const std::vector<float> v = random_values(static_cast<std::size_t>(n), s, -0.5f, 0.5f);
    std::vector<std::byte> bytes(v.size() * format::dtype_size(dtype));
    format::from_f32(v.data(), dtype, v.size(), bytes.data());
    return bytes;
  };
  return {dtype, I, stored(I * H, seed), stored(I * H, seed + 1), stored(H * I, seed + 2)};
}

format::TensorView view_of(const std::vector<std::byte>& bytes, Dtype dtype, Shape shape,
                           const std::string& name) {
  return {name, dtype, std::move(shape), bytes.data(), bytes.size()};
}

// Random routing: k distinct experts per token, weights in (0, 1).
void route(const MoeCase& c, std::vector<std::int32_t>& ids, std::vector<float>& weights) {
  std::mt19937 rng(61);
  std::vector<std::int32_t> all(static_cast<std::size_t>(c.n_experts));
  std::iota(all.begin(), all.end(), 0);
  for (std::int64_t t = 0; t < c.T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    for (int s = 0; s < c.k; ++s) ids.push_back(c.one_expert ? 2 : all[static_cast<std::size_t>(s)]);
  }
  weights = random_values(ids.size(), 62, 0.05f, 1.0f);
}

void PrintTo(const MoeCase& c, std::ostream* os) { *os << c.name; }

class MoeExperts : public ::testing::TestWithParam<MoeCase> {};

// Relative to the first-order error scale of the reference (sums of |terms| through gate, up,
// silu and down), float32 sums err by a few ulps.
constexpr double kRtol = 1e-6;

TEST_P(MoeExperts, MatchesReference) {
  const MoeCase& c = GetParam();
  std::vector<StoredExpert> stored;
  for (int e = 0; e < c.n_experts; ++e) {
    stored.push_back(make_expert(c.dtypes[static_cast<std::size_t>(e) % c.dtypes.size()], c.H, c.I,
                                 100 + 3 * static_cast<unsigned>(e)));
  }
  std::vector<std::int32_t> ids;
  std::vector<float> weights;
  route(c, ids, weights);
  const std::set<std::int32_t> used(ids.begin(), ids.end());
  const std::vector<std::int32_t> unique(used.begin(), used.end());
  std::vector<ExpertWeights> experts;
  for (const std::int32_t e : unique) {
    const StoredExpert& s = stored[static_cast<std::size_t>(e)];
    const std::string prefix = "experts." + std::to_string(e);
    experts.push_back({view_of(s.gate, s.dtype, {c.I, c.H}, prefix + ".gate_proj.weight"),
                       view_of(s.up, s.dtype, {c.I, c.H}, prefix + ".up_proj.weight"),
                       view_of(s.down, s.dtype, {c.H, c.I}, prefix + ".down_proj.weight")});
  }
  const MoeRouting routing{c.T, c.k, ids, weights, unique};

  auto backend = make_backend();
  const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.H), 63);
  Guarded xt(*backend, {c.T, c.H}, x);
  Guarded out(*backend, {c.T, c.H});
  backend->moe_experts(xt.tensor(), routing, experts, out.tensor());
  const std::vector<float> got = out.values();
  expect_close(got, moe_ref(x, c.H, c.k, ids, weights, stored), kRtol, "moe_experts");
  out.expect_guards_intact("moe_experts");

  // Again, over an output full of garbage and with the scratch already grown: the same bits.
  backend->upload(random_values(got.size(), 64, -1e3f, 1e3f), out.tensor());
  backend->moe_experts(xt.tensor(), routing, experts, out.tensor());
  const std::vector<float> again = out.values();
  EXPECT_EQ(std::memcmp(again.data(), got.data(), got.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MoeExperts,
    ::testing::Values(
        MoeCase{1, 32, 16, 1, 4, {Dtype::f32}, false, "decode_k1_f32"},
        MoeCase{1, 33, 31, 4, 8, {Dtype::bf16}, false, "decode_k4_bf16"},
        MoeCase{5, 64, 65, 2, 6, {Dtype::f16}, false, "prefill_k2_f16"},
        MoeCase{7, 63, 33, 3, 5, {Dtype::bf16}, false, "prefill_k3_bf16"},
        MoeCase{33, 65, 17, 2, 9, {Dtype::f32, Dtype::f16, Dtype::bf16}, false, "mixed_dtypes"},
        MoeCase{33, 31, 7, 1, 4, {Dtype::f16}, true, "all_tokens_one_expert"},
        MoeCase{3, 4099, 13, 2, 3, {Dtype::f32, Dtype::bf16}, false, "long_rows"}),
    [](const auto& test) { return test.param.name; });

TEST(MoeExpertsUnaligned, F32BytesAtAnOddAddress) {
  const std::int64_t T = 3, H = 17, I = 11;
  StoredExpert s = make_expert(Dtype::f32, H, I, 7);
  // Copy each block to an address 2 bytes past alignment.
  std::vector<std::vector<std::byte>> shifted;
  for (const auto* block : {&s.gate, &s.up, &s.down}) {
    std::vector<std::byte> b(block->size() + 2);
    std::copy(block->begin(), block->end(), b.begin() + 2);
    shifted.push_back(std::move(b));
  }
  auto view = [&](int i, Shape shape) {
    const auto& b = shifted[static_cast<std::size_t>(i)];
    return format::TensorView{"w", Dtype::f32, std::move(shape), b.data() + 2, b.size() - 2};
  };
  const std::vector<ExpertWeights> experts = {{view(0, {I, H}), view(1, {I, H}), view(2, {H, I})}};
  const std::vector<std::int32_t> ids = {0, 0, 0};
  const std::vector<float> weights = {0.5f, 1.0f, 0.25f};
  const std::vector<std::int32_t> unique = {0};
  auto backend = make_backend();
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * H), 65);
  Guarded xt(*backend, {T, H}, x);
  Guarded out(*backend, {T, H});
  backend->moe_experts(xt.tensor(), {T, 1, ids, weights, unique}, experts, out.tensor());
  const std::vector<StoredExpert> stored = {s};
  expect_close(out.values(), moe_ref(x, H, 1, ids, weights, stored), kRtol, "moe unaligned");
  out.expect_guards_intact("moe unaligned");
}

TEST(MoeExpertsErrors, RoutingAndWeights) {
  const std::int64_t T = 2, H = 8, I = 4;
  StoredExpert s = make_expert(Dtype::f16, H, I, 9);
  const ExpertWeights good{view_of(s.gate, Dtype::f16, {I, H}, "g"), view_of(s.up, Dtype::f16, {I, H}, "u"),
                           view_of(s.down, Dtype::f16, {H, I}, "d")};
  const std::vector<ExpertWeights> two = {good, good};
  const std::vector<std::int32_t> ids = {1, 3};
  const std::vector<float> weights = {1.0f, 1.0f};
  auto backend = make_backend();
  Tensor x = backend->empty({T, H});
  backend->upload(std::vector<float>(static_cast<std::size_t>(T * H), 1.0f), x);
  Tensor out = backend->empty({T, H});
  const std::vector<std::int32_t> unique = {1, 3};
  EXPECT_NO_THROW(backend->moe_experts(x, {T, 1, ids, weights, unique}, two, out));
  // A subset of the chosen experts computes only their slots: token 1 (expert 3) stays zero.
  const std::vector<std::int32_t> subset = {1, 2};
  EXPECT_NO_THROW(backend->moe_experts(x, {T, 1, ids, weights, subset}, two, out));
  std::vector<float> got(static_cast<std::size_t>(T * H));
  backend->download(out, got);
  EXPECT_NE(got[0], 0.0f);
  EXPECT_EQ(got[static_cast<std::size_t>(H)], 0.0f);
  const std::vector<std::int32_t> descending = {3, 1};
  EXPECT_THROW(backend->moe_experts(x, {T, 1, ids, weights, descending}, two, out), ShapeError);
  EXPECT_THROW(backend->moe_experts(x, {T, 2, ids, weights, unique}, two, out), ShapeError);
  EXPECT_THROW(backend->moe_experts(x, {T, 1, ids, weights, unique}, std::span(two).first(1), out),
               ShapeError);
  ExpertWeights wrong = good;
  wrong.down.shape = {I, H};
  const std::vector<ExpertWeights> bad_shape = {good, wrong};
  EXPECT_THROW(backend->moe_experts(x, {T, 1, ids, weights, unique}, bad_shape, out), ShapeError);
  ExpertWeights short_bytes = good;
  short_bytes.up.nbytes -= 1;
  const std::vector<ExpertWeights> bad_bytes = {short_bytes, good};
  EXPECT_THROW(backend->moe_experts(x, {T, 1, ids, weights, unique}, bad_bytes, out), FormatError);
  Tensor out_bad = backend->empty({T, H + 1});
  EXPECT_THROW(backend->moe_experts(x, {T, 1, ids, weights, unique}, two, out_bad), ShapeError);
}

}  // namespace
}  // namespace moeflux::test

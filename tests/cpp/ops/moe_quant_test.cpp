// moe_experts with quantized and 16-bit experts (the row kernels of matmul, no whole-expert
// widening): decode and prefill routing against the double reference on format's dequantized
// values, both kernel sets; ascending batches with accumulate = true give the bits of one call;
// 1 and 3 threads give the same bits; a subset of the chosen experts computes only their slots.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"
#include "moeflux/util/error.h"
#include "reference.h"
#include "stored_weight.h"

namespace moeflux::test {
namespace {

using backend::ExpertWeights;
using backend::MoeRouting;
using backend::cpu::Simd;
using format::Dtype;

// As quant_matmul_test: relative to the first-order error scale, float32 sums with per-group scaling.
constexpr double kRtol = 1e-5;

struct Experts {
  std::vector<StoredExpert> stored;
  std::vector<std::vector<StoredWeight>> weights;  // [expert][gate, up, down], keeps the bytes alive
};

// Expert e gets dtypes[e % size]; quantized ones use `quant` (bits from the dtype).
Experts make_experts(int n, std::int64_t H, std::int64_t I, const std::vector<Dtype>& dtypes,
                     const format::QuantParams& quant) {
  Experts out;
  for (int e = 0; e < n; ++e) {
    const Dtype dtype = dtypes[static_cast<std::size_t>(e) % dtypes.size()];
    const auto seed = 900 + 3 * static_cast<unsigned>(e);
    std::vector<StoredWeight> w = {make_weight(dtype, I, H, seed, quant, -0.5f, 0.5f),
                                   make_weight(dtype, I, H, seed + 1, quant, -0.5f, 0.5f),
                                   make_weight(dtype, H, I, seed + 2, quant, -0.5f, 0.5f)};
    out.stored.push_back({dtype, I, w[0].bytes, w[1].bytes, w[2].bytes, w[0].quant});
    out.weights.push_back(std::move(w));
  }
  return out;
}

std::vector<ExpertWeights> views(const Experts& experts, std::span<const std::int32_t> ids) {
  std::vector<ExpertWeights> out;
  for (const std::int32_t e : ids) {
    const auto& w = experts.weights[static_cast<std::size_t>(e)];
    const std::string prefix = "experts." + std::to_string(e);
    out.push_back(
        {w[0].view(prefix + ".gate_proj"), w[1].view(prefix + ".up_proj"), w[2].view(prefix + ".down_proj")});
  }
  return out;
}

struct Routing {
  std::vector<std::int32_t> ids, unique;
  std::vector<float> weights;
};

// k distinct experts of n per token; with `skew`, experts 0 and 1 get every other token (so their row
// counts pass the decode limit and take the tiled path).
Routing route(std::int64_t T, int k, int n, bool skew) {
  Routing r;
  std::mt19937 rng(71);
  std::vector<std::int32_t> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  for (std::int64_t t = 0; t < T; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    if (skew && t % 2 == 0) std::partition(all.begin(), all.end(), [](std::int32_t e) { return e < 2; });
    r.ids.insert(r.ids.end(), all.begin(), all.begin() + k);
  }
  r.weights = random_values(r.ids.size(), 72, 0.05f, 1.0f);
  const std::set<std::int32_t> used(r.ids.begin(), r.ids.end());
  r.unique.assign(used.begin(), used.end());
  return r;
}

std::vector<float> run(Simd simd, int threads, const Experts& experts, const Routing& r, std::int64_t T,
                       std::int64_t H, int k, const std::vector<std::vector<std::int32_t>>& batches) {
  auto backend = make_cpu_backend(threads, simd);
  const std::vector<float> x = random_values(static_cast<std::size_t>(T * H), 73);
  Guarded xt(*backend, {T, H}, x);
  Guarded out(*backend, {T, H});
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const std::vector<ExpertWeights> w = views(experts, batches[b]);
    backend->moe_experts(xt.tensor(), {T, k, r.ids, r.weights, batches[b]}, w, out.tensor(), b > 0);
  }
  out.expect_guards_intact("moe_experts");
  return out.values();
}

struct Case {
  std::int64_t T, H, I;
  int k, n;
  std::vector<Dtype> dtypes;
  format::QuantParams quant;
  bool skew;
  std::string name;
};

class MoeQuant : public ::testing::TestWithParam<std::tuple<Case, Simd>> {};

TEST_P(MoeQuant, MatchesReferenceAndBatchesGiveTheSameBits) {
  const auto& [c, simd] = GetParam();
  if (simd == Simd::avx2 && backend::cpu::best_simd() != Simd::avx2) {
    GTEST_SKIP() << "unsupported: this CPU lacks AVX2, FMA or F16C";
  }
  const Experts experts = make_experts(c.n, c.H, c.I, c.dtypes, c.quant);
  const Routing r = route(c.T, c.k, c.n, c.skew);
  const std::vector<float> x = random_values(static_cast<std::size_t>(c.T * c.H), 73);

  const std::vector<float> whole = run(simd, 1, experts, r, c.T, c.H, c.k, {r.unique});
  expect_close(whole, moe_ref(x, c.H, c.k, r.ids, r.weights, experts.stored), kRtol, "moe_experts");

  // Ascending batches of 1, 2, 3, ... experts, accumulated: the same bits, at 1 and at 3 threads.
  std::vector<std::vector<std::int32_t>> batches;
  for (std::size_t at = 0, size = 1; at < r.unique.size(); at += size, ++size) {
    const auto batch = std::span(r.unique).subspan(at, std::min(size, r.unique.size() - at));
    batches.emplace_back(batch.begin(), batch.end());
  }
  ASSERT_GT(batches.size(), 1u);
  for (const int threads : {1, 3}) {
    const std::vector<float> batched = run(simd, threads, experts, r, c.T, c.H, c.k, batches);
    EXPECT_EQ(std::memcmp(batched.data(), whole.data(), whole.size() * sizeof(float)), 0)
        << "batched at " << threads << " threads differs from one call";
  }

  // Only the slots of the listed experts: the reference with the other slots' weights at zero.
  const std::vector<std::int32_t> odd = [&] {
    std::vector<std::int32_t> out;
    for (const std::int32_t e : r.unique) {
      if (e % 2 == 1) out.push_back(e);
    }
    return out;
  }();
  std::vector<float> masked = r.weights;
  for (std::size_t s = 0; s < masked.size(); ++s) {
    if (r.ids[s] % 2 == 0) masked[s] = 0.0f;
  }
  const std::vector<float> subset = run(simd, 3, experts, r, c.T, c.H, c.k, {odd});
  expect_close(subset, moe_ref(x, c.H, c.k, r.ids, masked, experts.stored), kRtol, "moe_experts subset");
}

const Case kCases[] = {
    {1, 128, 64, 4, 8, {Dtype::q4}, {4, 64, Dtype::bf16}, false, "decode_q4_g64"},
    {1, 96, 160, 2, 5, {Dtype::q3, Dtype::q8}, {3, 32, Dtype::f16}, false, "decode_q3_q8_g32"},
    {3, 256, 128, 2, 6, {Dtype::q2, Dtype::bf16}, {2, 128, Dtype::bf16}, false, "decode3_q2_bf16"},
    {19, 128, 96, 2, 7, {Dtype::q4, Dtype::f16, Dtype::q8}, {4, 32, Dtype::f16}, true, "prefill_mixed"},
    {33, 4160, 64, 2, 4, {Dtype::q3}, {3, 64, Dtype::bf16}, true, "prefill_q3_long_rows"},
};

std::string case_name(const ::testing::TestParamInfo<std::tuple<Case, Simd>>& info) {
  const auto& [c, simd] = info.param;
  return c.name + (simd == Simd::avx2 ? "_avx2" : "_portable");
}

INSTANTIATE_TEST_SUITE_P(Cases, MoeQuant,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(Simd::avx2, Simd::portable)),
                         case_name);

}  // namespace
}  // namespace moeflux::test

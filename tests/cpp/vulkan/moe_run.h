// What the expert tests (moe_test.cpp, moe_grouped_test.cpp) share: a routing drawn by the test,
// the moe_experts call (one call, or the experts in ascending batches accumulating as the model
// runs them, into a guarded output), and their tolerance, relative to the largest |output|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vulkan_harness.h"

namespace moeflux::test {

// T tokens' k experts each (ids [T * k]) with their weights, and the distinct experts ascending.
struct Routing {
  std::int64_t T;
  int k;
  std::vector<std::int32_t> ids, unique;
  std::vector<float> weights;

  // Weights drawn from `seed`; the caller then appends T * k ids and calls ids_done().
  Routing(std::int64_t tokens, int k_, unsigned seed)
      : T(tokens), k(k_), weights(random_values(static_cast<std::size_t>(tokens * k_), seed, 0.05f, 1.0f)) {}
  void ids_done() {
    unique = ids;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  }
  backend::MoeRouting view(std::span<const std::int32_t> subset) const { return {T, k, ids, weights, subset}; }
};

// moe_experts on `b` over `out_init` (none: a fresh output), in batches of `batch` of the routing's
// unique experts; x `guard` floats into its binding (37: rows unaligned for vec4 loads; 40:
// aligned); `dispatches` gets the Vulkan dispatch count. Experts: weights(ids).
template <class Experts>
std::vector<float> run_moe(Backend& b, const Experts& experts, const Routing& r, const std::vector<float>& x,
                           std::int64_t H, const std::vector<float>* out_init, std::size_t batch,
                           std::int64_t guard = 37, double* dispatches = nullptr) {
  Guarded xt(b, {r.T, H}, x, guard);
  Guarded out = out_init ? Guarded(b, {r.T, H}, *out_init) : Guarded(b, {r.T, H});
  b.reset_stats();
  for (std::size_t begin = 0; begin < r.unique.size(); begin += batch) {
    const auto ids = std::span(r.unique).subspan(begin, std::min(batch, r.unique.size() - begin));
    const auto w = experts.weights(ids);
    b.moe_experts(xt.tensor(), r.view(ids), w, out.tensor(), out_init != nullptr || begin > 0);
  }
  if (dispatches) *dispatches = b.stats()["vk_dispatches"];
  out.expect_guards_intact("moe_experts");
  return out.values();
}

// Within rtol of the largest |want|: float32 products of a few hundred terms summed in other orders.
inline void expect_near_largest(const std::vector<float>& got, const std::vector<float>& want, double rtol,
                                const std::string& what) {
  double max = 0.0;
  for (const float w : want) max = std::max(max, std::abs(static_cast<double>(w)));
  expect_near_cpu(got, want, std::vector<double>(want.size(), max), rtol, what);
}

}  // namespace moeflux::test

// The moe_experts call of the expert tests (moe_test.cpp, moe_grouped_test.cpp): one call, or the
// experts in ascending batches accumulating as the model runs them, into a guarded output; and
// their tolerance, relative to the largest |output|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vulkan_harness.h"

namespace moeflux::test {

// moe_experts on `b` over `out_init` (none: a fresh output), in batches of `batch` of the routing's
// unique experts; x `guard` floats into its binding (37: rows unaligned for vec4 loads; 40:
// aligned); `dispatches` gets the Vulkan dispatch count. Experts: weights(ids); Routing: T,
// unique and view(ids).
template <class Experts, class Routing>
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

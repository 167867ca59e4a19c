#include "moeflux/experts/cache_plan.h"

#include <algorithm>
#include <numeric>

#include "moeflux/util/error.h"

namespace moeflux::experts {

namespace {

std::uint64_t largest_stride(const format::Manifest& manifest) {
  std::uint64_t stride = 0;
  for (const auto& layer : manifest.expert_layers) stride = std::max(stride, layer.stride);
  return stride;
}

}  // namespace

std::uint64_t min_cache_bytes(const format::Manifest& manifest, int k) {
  return static_cast<std::uint64_t>(std::max(k, 0)) * largest_stride(manifest);
}

CachePlan plan_cache(const format::Manifest& manifest, std::uint64_t cache_bytes, int k) {
  MF_CHECK(k >= 1, ConfigError, "[open_expert_store] experts_per_token=", k,
           "; it must be at least 1 (the model's num_experts_per_tok)");
  CachePlan plan;
  plan.slot_bytes = largest_stride(manifest);
  std::vector<int> n_experts;
  for (const auto& layer : manifest.expert_layers) {
    MF_CHECK(k <= layer.n_experts, ConfigError, "[open_expert_store] experts_per_token=", k, " but layer ",
             layer.layer, " has only ", layer.n_experts, " experts; pass at most ", layer.n_experts);
    n_experts.push_back(layer.n_experts);
  }
  if (n_experts.empty()) return plan;
  const std::uint64_t total = std::accumulate(n_experts.begin(), n_experts.end(), std::uint64_t{0},
                                              [](std::uint64_t sum, int n) { return sum + static_cast<std::uint64_t>(n); });
  const std::uint64_t records = cache_bytes / plan.slot_bytes;
  const auto uk = static_cast<std::uint64_t>(k);
  if (cache_bytes != 0 && records < uk) {
    const std::uint64_t minimum = uk * plan.slot_bytes;
    const std::uint64_t mib = (minimum + (std::uint64_t{1} << 20) - 1) >> 20;
    throw BudgetError(util::concat("[open_expert_store] cache_bytes=", cache_bytes, " holds ", records,
                                   " expert records of ", plan.slot_bytes, " bytes; one layer's top-k needs ", k,
                                   "; the smallest budget that works is ", minimum, " bytes (", mib,
                                   " MiB); raise cache_bytes, or pass 0 for room for every expert"));
  }
  const std::uint64_t n_slots = cache_bytes == 0 ? total : std::min(records, total);
  static_cast<util::PoolPlan&>(plan) = util::plan_pools(n_experts, n_slots, k);
  return plan;
}

}  // namespace moeflux::experts

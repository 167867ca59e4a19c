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

// Splits n slots (at most the experts of all layers) evenly over the layers, never giving a layer
// more slots than it has experts; slots left by the division go to the first layers.
std::vector<std::uint32_t> per_layer_pools(const std::vector<std::uint64_t>& n_experts, std::uint64_t n) {
  const std::size_t L = n_experts.size();
  std::vector<std::size_t> order(L);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return n_experts[a] < n_experts[b]; });
  std::vector<std::uint32_t> sizes(L, 0);
  std::uint64_t left = n;
  for (std::size_t j = 0; j < L; ++j) {  // smallest layers first: a full layer passes its share on
    const std::uint64_t share = left / (L - j);
    if (n_experts[order[j]] <= share) {
      sizes[order[j]] = static_cast<std::uint32_t>(n_experts[order[j]]);
      left -= n_experts[order[j]];
      continue;
    }
    // Every remaining layer has more experts than the share: each gets it, the first ones one more.
    std::vector<std::size_t> rest(order.begin() + static_cast<std::ptrdiff_t>(j), order.end());
    std::sort(rest.begin(), rest.end());
    const std::uint64_t extra = left - share * (L - j);
    for (std::size_t r = 0; r < rest.size(); ++r)
      sizes[rest[r]] = static_cast<std::uint32_t>(share + (r < extra ? 1 : 0));
    break;
  }
  return sizes;
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
  std::vector<std::uint64_t> n_experts;
  for (const auto& layer : manifest.expert_layers) {
    MF_CHECK(k <= layer.n_experts, ConfigError, "[open_expert_store] experts_per_token=", k, " but layer ",
             layer.layer, " has only ", layer.n_experts, " experts; pass at most ", layer.n_experts);
    n_experts.push_back(static_cast<std::uint64_t>(layer.n_experts));
  }
  if (n_experts.empty()) return plan;
  const std::uint64_t total = std::accumulate(n_experts.begin(), n_experts.end(), std::uint64_t{0});
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
  plan.n_slots = cache_bytes == 0 ? total : std::min(records, total);
  const std::uint64_t L = n_experts.size();
  if (plan.n_slots >= L * uk) {
    plan.pool_sizes = per_layer_pools(n_experts, plan.n_slots);
    plan.pool_of_layer.resize(L);
    std::iota(plan.pool_of_layer.begin(), plan.pool_of_layer.end(), 0);
  } else {
    plan.pool_sizes = {static_cast<std::uint32_t>(plan.n_slots)};
    plan.pool_of_layer.assign(L, 0);
  }
  return plan;
}

}  // namespace moeflux::experts

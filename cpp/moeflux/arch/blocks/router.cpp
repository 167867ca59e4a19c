#include "moeflux/arch/blocks/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "moeflux/util/error.h"

namespace moeflux::arch {

void route_softmax_topk(std::span<const float> logits, std::int64_t n_tokens, int n_experts,
                        const SoftmaxTopkOptions& options, std::span<std::int32_t> experts,
                        std::span<float> weights) {
  const int k = options.k;
  MF_ASSERT(k >= 1 && k <= n_experts, "k=", k, " experts=", n_experts);
  MF_ASSERT(logits.size() == static_cast<std::size_t>(n_tokens * n_experts), "logits size");
  std::vector<float> probs(static_cast<std::size_t>(n_experts));
  std::vector<std::int32_t> order(static_cast<std::size_t>(n_experts));
  for (std::int64_t t = 0; t < n_tokens; ++t) {
    const float* row = logits.data() + t * n_experts;
    const float max = *std::max_element(row, row + n_experts);
    float sum = 0.0f;
    for (int e = 0; e < n_experts; ++e) sum += probs[e] = std::exp(row[e] - max);
    for (float& p : probs) p /= sum;

    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
      return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
    });
    float chosen = 0.0f;
    for (int s = 0; s < k; ++s) chosen += probs[order[s]];
    for (int s = 0; s < k; ++s) {
      experts[t * k + s] = order[s];
      weights[t * k + s] = options.normalize ? probs[order[s]] / chosen : probs[order[s]];
    }
  }
}

std::vector<std::int32_t> unique_experts(std::span<const std::int32_t> experts) {
  std::vector<std::int32_t> unique(experts.begin(), experts.end());
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  return unique;
}

}  // namespace moeflux::arch

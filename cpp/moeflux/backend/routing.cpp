#include "moeflux/backend/routing.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>

#include "moeflux/util/error.h"

namespace moeflux::backend {

void softmax_topk(std::span<const float> logits, std::int64_t n_tokens, int n_experts, const RouteOptions& options,
                  std::span<std::int32_t> experts, std::span<float> weights) {
  const int k = options.k;
  MF_ASSERT(k >= 1 && k <= n_experts, "k=", k, " experts=", n_experts);
  MF_ASSERT(logits.size() == static_cast<std::size_t>(n_tokens * n_experts), "logits size");
  MF_ASSERT(experts.size() == static_cast<std::size_t>(n_tokens * k) && weights.size() == experts.size(),
            "routing size");
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

void routing_from_tensor(std::span<const float> values, int k, std::span<std::int32_t> experts, std::span<float> weights) {
  MF_ASSERT(k >= 1 && values.size() % (2 * static_cast<std::size_t>(k)) == 0, "routing of ", values.size(), " values, k=", k);
  const std::size_t T = values.size() / (2 * static_cast<std::size_t>(k));
  MF_ASSERT(experts.size() == T * k && weights.size() == T * k, "routing spans");
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t s = 0; s < static_cast<std::size_t>(k); ++s) {
      experts[t * k + s] = std::bit_cast<std::int32_t>(values[t * 2 * k + s]);
      weights[t * k + s] = values[t * 2 * k + k + s];
    }
  }
}

std::vector<float> routing_to_tensor(std::span<const std::int32_t> experts, std::span<const float> weights, int k) {
  MF_ASSERT(k >= 1 && experts.size() % static_cast<std::size_t>(k) == 0 && weights.size() == experts.size(),
            "routing spans");
  const std::size_t T = experts.size() / static_cast<std::size_t>(k);
  std::vector<float> values(T * 2 * static_cast<std::size_t>(k));
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t s = 0; s < static_cast<std::size_t>(k); ++s) {
      values[t * 2 * k + s] = std::bit_cast<float>(experts[t * k + s]);
      values[t * 2 * k + k + s] = weights[t * k + s];
    }
  }
  return values;
}

}  // namespace moeflux::backend

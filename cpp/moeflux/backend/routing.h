// Softmax top-k routing on the host, the reference every backend's route_softmax_topk follows
// (Qwen2/3-MoE, Qwen3-Next / Qwen3.5, Mixtral, OLMoE), and the routing tensor's encoding.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/backend/backend.h"

namespace moeflux::backend {

// logits [T, E] -> experts [T, k], weights [T, k]: probabilities in float32 (max subtracted, exp,
// divided by the sum), the k largest in descending order (ties: lower expert first), divided by
// their sum when options.normalize.
void softmax_topk(std::span<const float> logits, std::int64_t n_tokens, int n_experts, const RouteOptions& options,
                  std::span<std::int32_t> experts, std::span<float> weights);

// A routing tensor's values ([T, 2k] as downloaded) as experts [T, k] and weights [T, k], and back.
void routing_from_tensor(std::span<const float> values, int k, std::span<std::int32_t> experts, std::span<float> weights);
std::vector<float> routing_to_tensor(std::span<const std::int32_t> experts, std::span<const float> weights, int k);

}  // namespace moeflux::backend

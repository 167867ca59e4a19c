// Softmax top-k routing on the host (Qwen2/3-MoE, Qwen3-Next, Mixtral, OLMoE): probabilities in
// float32, the k largest in descending order (ties: lower expert id first), optional renormalisation.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace moeflux::arch {

struct SoftmaxTopkOptions {
  int k = 1;
  bool normalize = false;  // norm_topk_prob
};

// logits [T, E] -> experts [T, k], weights [T, k].
void route_softmax_topk(std::span<const float> logits, std::int64_t n_tokens, int n_experts,
                        const SoftmaxTopkOptions& options, std::span<std::int32_t> experts,
                        std::span<float> weights);

// The distinct experts of a routing, ascending.
std::vector<std::int32_t> unique_experts(std::span<const std::int32_t> experts);

}  // namespace moeflux::arch

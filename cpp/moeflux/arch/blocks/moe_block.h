// The sparse MoE block: router logits on the backend, softmax top-k on the host (the one sync point
// of a layer), the chosen experts from the expert store, then the routed SwiGLU experts and an
// optional shared expert with a sigmoid gate (Qwen2-MoE style). Also the dense SwiGLU MLP.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/arch/blocks/router.h"
#include "moeflux/backend/backend.h"
#include "moeflux/experts/expert_store.h"

namespace moeflux::arch {

struct MlpWeights {
  backend::Tensor gate_proj, up_proj, down_proj;  // [I, H], [I, H], [H, I]
};

// out = down(silu(gate(x)) * up(x)); x, out [T, H]
void mlp_block(backend::Backend& backend, const MlpWeights& weights, const backend::Tensor& x,
               backend::Tensor& out);

struct MoeConfig {
  int layer = 0;  // decoder layer index (for the expert store)
  int n_experts = 0;
  SoftmaxTopkOptions routing;
  bool has_shared_expert = false;
};

struct MoeWeights {
  backend::Tensor router;              // [E, H]
  MlpWeights shared_expert;            // when has_shared_expert
  backend::Tensor shared_expert_gate;  // [1, H], when has_shared_expert
};

// Where the block reports its routing: experts/weights [T, k], router logits [T, E] (may be empty).
struct MoeRoutingOut {
  std::vector<std::int32_t> experts;
  std::vector<float> weights;
  std::vector<float> router_logits;
};

// x, out [T, H]
void moe_block(backend::Backend& backend, experts::ExpertStore& store, const MoeConfig& config,
               const MoeWeights& weights, const backend::Tensor& x, backend::Tensor& out,
               MoeRoutingOut& routing);

}  // namespace moeflux::arch

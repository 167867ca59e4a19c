// The sparse MoE block: router logits and softmax top-k on the backend; when every expert of the
// layer is on the device the backend runs them from its routing (no host sync), else the routing is
// downloaded (the layer's one sync point) and the chosen experts come from the expert store. Then
// an optional shared expert with a sigmoid gate (Qwen2-MoE style). Also the dense SwiGLU MLP.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/arch/blocks/forward_routing.h"
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

// x, out [T, H]; the routing goes to `routing` (ForwardRouting::layer).
void moe_block(backend::Backend& backend, experts::ExpertStore& store, const MoeConfig& config,
               const MoeWeights& weights, const backend::Tensor& x, backend::Tensor& out,
               MoeRoutingSlot routing);

}  // namespace moeflux::arch

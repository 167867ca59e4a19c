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
#include "moeflux/arch/blocks/pre_norm.h"
#include "moeflux/backend/backend.h"
#include "moeflux/experts/expert_store.h"

namespace moeflux::arch {

struct MlpWeights {
  backend::Tensor gate_proj, up_proj, down_proj;  // [I, H], [I, H], [H, I]
};

// x += down(silu(gate(h)) * up(h)) with h = rms_norm(x); x [T, H]
void mlp_block(backend::Backend& backend, const MlpWeights& weights, const PreNorm& norm, backend::Tensor& x);

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

// x += moe(rms_norm(x)); x [T, H]; the routing goes to `routing` (ForwardRouting::layer). With
// `next`, the next layer's input norm is folded into the block (next->scaled = x * w: backend.h's
// FoldedNorm), by moe_experts_routed's last step or else apply_norm_weight (the same bits); only
// where the backend folds_input_norm(T) and there is no shared expert.
void moe_block(backend::Backend& backend, experts::ExpertStore& store, const MoeConfig& config,
               const MoeWeights& weights, const PreNorm& norm, backend::Tensor& x, MoeRoutingSlot routing,
               const backend::FoldedNorm* next = nullptr);

}  // namespace moeflux::arch
